"""Bi-Mamba: Mamba-2 whose in_proj and out_proj are FBI-Linear (binary weights with per-input-column scale and
shift); conv1d, A_log, D, dt_bias, norms and embeddings stay full precision, as in the Bi-Mamba paper.

Numerics follow transformers' Mamba2 (torch path): in_proj -> (gate z, xBC, dt); causal depthwise conv1d + SiLU on
xBC; ``dt = clamp(softplus(dt + dt_bias), time_step_limit)``; the selective scan (``edgebit::selective_scan``)
with ``A = -exp(A_log)`` and skip ``D``; a gated grouped RMSNorm ``norm(y * silu(z))``; out_proj. Decoding keeps
per layer a conv state ``[B, conv_dim, K]`` (the last K inputs of the conv) and an SSM state ``[B, H, P, N]``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from edgebit.models.config_checks import (check_flags, check_number_pair, check_positive_floats, check_sizes,
                                          check_token_ids)
from edgebit.models.head import output_logits
from edgebit.models.layers import RMSNorm, layers_of, pack_layers
from edgebit_ops.binary_matmul import binary_linear, pack_signs, unpack_signs
from edgebit_ops.selective_scan import selective_scan, selective_scan_chunked


@dataclass
class BiMambaConfig:
    """Shape of a Bi-Mamba / Mamba-2 model (field names follow transformers' Mamba2Config)."""

    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_heads: int
    head_dim: int
    state_size: int = 128
    expand: int = 2
    n_groups: int = 1
    conv_kernel: int = 4
    layer_norm_epsilon: float = 1e-5
    use_conv_bias: bool = True
    use_bias: bool = False
    time_step_limit: tuple[float, float] = (0.0, float("inf"))
    tie_word_embeddings: bool = True
    bos_token_id: int | None = None
    eos_token_id: int | None = None

    def __post_init__(self) -> None:
        check_sizes(self, "vocab_size", "hidden_size", "num_hidden_layers", "num_heads", "head_dim", "state_size",
                    "expand", "n_groups", "conv_kernel")
        check_positive_floats(self, "layer_norm_epsilon")
        check_flags(self, "use_conv_bias", "use_bias", "tie_word_embeddings")
        check_token_ids(self, "bos_token_id", "eos_token_id")
        self.time_step_limit = check_number_pair(self, "time_step_limit")
        if self.intermediate_size != self.num_heads * self.head_dim:
            raise ValueError(f"expand * hidden_size ({self.intermediate_size}) must equal num_heads * head_dim "
                             f"({self.num_heads} * {self.head_dim})")
        if self.num_heads % self.n_groups:
            raise ValueError(f"num_heads ({self.num_heads}) must be a multiple of n_groups ({self.n_groups})")

    @property
    def intermediate_size(self) -> int:
        return self.expand * self.hidden_size

    @property
    def conv_dim(self) -> int:
        return self.intermediate_size + 2 * self.n_groups * self.state_size

    def weight_count(self) -> int:
        """How many weights a model of this config holds (what building it allocates, before packing)."""
        h, inner, conv = self.hidden_size, self.intermediate_size, self.conv_dim
        in_proj = h * (inner + conv + self.num_heads) + 2 * h
        layer = in_proj + inner * h + 2 * inner + conv * (self.conv_kernel + 1) + 3 * self.num_heads + inner + h
        return self.vocab_size * h * (1 if self.tie_word_embeddings else 2) + self.num_hidden_layers * layer + h

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "BiMambaConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})


class FBILinear(nn.Module):
    """``W_hat = alpha * sign(W) + beta`` with alpha, beta of shape [1, in]; trains with a straight-through sign,
    runs packed (1 bit per weight) through ``edgebit::binary_linear``. ``full_precision = True`` uses the latent
    weight as a plain dense layer (the full-precision phase before binarization, edgebit.training.bimamba)."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        nn.init.normal_(self.weight, std=in_features ** -0.5)
        self.alpha = nn.Parameter(self.weight.detach().abs().mean(0, keepdim=True).clone())
        self.beta = nn.Parameter(torch.zeros(1, in_features))
        self.full_precision = False

    @property
    def is_packed(self) -> bool:
        return self.weight is None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.is_packed:
            return binary_linear(x, self.w_signs, self.alpha, self.beta, self.in_features)
        if self.full_precision:
            return F.linear(x, self.weight)
        sign = torch.sign(self.weight)
        sign = self.weight + (sign - self.weight).detach()  # straight-through estimator
        return F.linear(x, self.alpha * sign + self.beta)

    @torch.no_grad()
    def set_binary(self, signs: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor) -> None:
        """Switch to the packed state: signs [out, in] in {-1, +1}, alpha and beta [1, in]."""
        if tuple(signs.shape) != (self.out_features, self.in_features):
            raise ValueError(f"expected signs of shape {(self.out_features, self.in_features)}, got "
                             f"{tuple(signs.shape)}")
        self.set_packed(pack_signs(signs), alpha, beta)

    @torch.no_grad()
    def set_packed(self, w_signs: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor) -> None:
        """Switch to the packed state with planar sign bits (ops/binary_matmul/SPEC.md)."""
        self.weight = None
        self.register_buffer("w_signs", w_signs.to(torch.uint8).contiguous())
        self.alpha = nn.Parameter(alpha.float().reshape(1, -1).clone(), requires_grad=False)
        self.beta = nn.Parameter(beta.float().reshape(1, -1).clone(), requires_grad=False)

    @torch.no_grad()
    def pack(self) -> None:
        self.set_binary(torch.sign(self.weight), self.alpha.detach(), self.beta.detach())

    def signs(self) -> torch.Tensor:
        return unpack_signs(self.w_signs, self.in_features) if self.is_packed else torch.sign(self.weight)

    def dense_weight(self) -> torch.Tensor:
        """W_hat as a float matrix [out, in] (for references and conversion)."""
        return self.alpha * self.signs().float() + self.beta


class GatedRMSNorm(nn.Module):
    """RMSNorm of ``y * silu(z)`` over groups of ``group_size`` channels."""

    def __init__(self, size: int, group_size: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.group_size = group_size
        self.eps = eps

    def forward(self, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        y = y.float() * F.silu(z.float())
        grouped = y.view(*y.shape[:-1], -1, self.group_size)
        grouped = grouped / torch.sqrt(grouped.pow(2).mean(-1, keepdim=True) + self.eps)  # as layers.RMSNorm
        return self.weight * grouped.view(y.shape)


class MambaState:
    """Per-layer conv and SSM states for recurrent decoding."""

    def __init__(self, config: BiMambaConfig, batch: int = 1):
        self.conv = [torch.zeros(batch, config.conv_dim, config.conv_kernel) for _ in range(config.num_hidden_layers)]
        self.ssm = [torch.zeros(batch, config.num_heads, config.head_dim, config.state_size)
                    for _ in range(config.num_hidden_layers)]


class SelectiveScan(nn.Module):
    """``edgebit::selective_scan`` as a module, so an exporter can swap in its own form (as it swaps packed layers);
    training uses the chunked (SSD) form, which is much faster under autograd."""

    def forward(self, x, dt, A, B, C, D, state):
        scan = selective_scan_chunked if torch.is_grad_enabled() and self.training else selective_scan
        return scan(x, dt, A, B, C, D, state)


class Mixer(nn.Module):
    def __init__(self, config: BiMambaConfig, layer: int):
        super().__init__()
        self.config = config
        self.layer = layer
        c = config
        self.in_proj = FBILinear(c.hidden_size, c.intermediate_size + c.conv_dim + c.num_heads)
        self.conv1d = nn.Conv1d(c.conv_dim, c.conv_dim, c.conv_kernel, groups=c.conv_dim, bias=c.use_conv_bias,
                                padding=c.conv_kernel - 1)
        self.dt_bias = nn.Parameter(torch.zeros(c.num_heads))
        self.A_log = nn.Parameter(torch.log(torch.arange(1, c.num_heads + 1, dtype=torch.float32)))
        self.D = nn.Parameter(torch.ones(c.num_heads))
        self.norm = GatedRMSNorm(c.intermediate_size, c.intermediate_size // c.n_groups, c.layer_norm_epsilon)
        self.out_proj = FBILinear(c.intermediate_size, c.hidden_size)
        self.scan = SelectiveScan()

    def conv_window(self, history: torch.Tensor, t: int, taps: list[torch.Tensor] | None = None) -> torch.Tensor:
        """The depthwise conv over ``history`` [B, C, K-1+T] as K multiply-adds of shifted views (the step's form):
        ONNX Runtime ran the same conv as a grouped Conv at 250 us a layer for one token (14 % of a decode step at
        hidden 1024), the multiply-adds take a few us in every runtime. ``taps``: the K weight columns [C, 1] (the
        step passes them as tensors of their own, so no runtime slices the weight on every step)."""
        weight = self.conv1d.weight[:, 0]  # [C, K]
        taps = taps or [weight[:, j:j + 1] for j in range(weight.shape[1])]
        out = history[..., :t] * taps[0]
        for j in range(1, len(taps)):
            out = out + history[..., j:j + t] * taps[j]
        return out if self.conv1d.bias is None else out + self.conv1d.bias[:, None]

    def _conv(self, xbc: torch.Tensor, state: MambaState | None) -> torch.Tensor:
        """Causal depthwise conv over time; with a state, continue from (and update) the last K inputs."""
        k = self.config.conv_kernel
        seq = xbc.transpose(1, 2)  # [B, C, T]
        t = seq.shape[-1]
        if state is None:
            out = self.conv1d(seq)[..., :t]
        else:
            history = torch.cat([state.conv[self.layer][..., 1:], seq], dim=-1)  # [B, C, K-1+T]
            out = self.conv_window(history, t)
            state.conv[self.layer] = history[..., -k:]
        return F.silu(out).transpose(1, 2)

    def forward(self, x: torch.Tensor, state: MambaState | None = None) -> torch.Tensor:
        c = self.config
        b, t, _ = x.shape
        z, xbc, dt = self.in_proj(x).split([c.intermediate_size, c.conv_dim, c.num_heads], dim=-1)
        xbc = self._conv(xbc, state)
        xs, B, C = xbc.split([c.intermediate_size, c.n_groups * c.state_size, c.n_groups * c.state_size], dim=-1)
        dt = F.softplus(dt + self.dt_bias).clamp(*c.time_step_limit)
        A = -torch.exp(self.A_log.float())
        initial = state.ssm[self.layer] if state is not None else x.new_zeros(b, c.num_heads, c.head_dim,
                                                                               c.state_size)
        y, final = self.scan(xs.reshape(b, t, c.num_heads, c.head_dim), dt, A,
                        B.reshape(b, t, c.n_groups, c.state_size), C.reshape(b, t, c.n_groups, c.state_size),
                        self.D, initial)
        if state is not None:
            state.ssm[self.layer] = final
        return self.out_proj(self.norm(y.reshape(b, t, -1), z))


class Block(nn.Module):
    def __init__(self, config: BiMambaConfig, layer: int):
        super().__init__()
        self.norm = RMSNorm(config.hidden_size, config.layer_norm_epsilon)
        self.mixer = Mixer(config, layer)

    def forward(self, x, state):
        return x + self.mixer(self.norm(x), state)


class BiMambaForCausalLM(nn.Module):
    """``forward(input_ids [B, T]) -> float32 logits [B, T, V]``; pass a :class:`MambaState` to decode recurrently."""

    family = "bimamba"

    def __init__(self, config: BiMambaConfig):
        super().__init__()
        self.config = config
        self.embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        nn.init.normal_(self.embeddings.weight, std=0.02)
        self.layers = nn.ModuleList(Block(config, i) for i in range(config.num_hidden_layers))
        self.norm_f = RMSNorm(config.hidden_size, config.layer_norm_epsilon)
        self.lm_head = None
        if not config.tie_word_embeddings:
            self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)

    def new_cache(self, batch: int = 1) -> MambaState:
        return MambaState(self.config, batch)

    def forward(self, input_ids: torch.Tensor, cache: MambaState | None = None) -> torch.Tensor:
        x = self.embeddings(input_ids).float()
        for layer in self.layers:
            x = layer(x, cache)
        return output_logits(self.norm_f(x), self.embeddings, self.lm_head)

    def binary_layers(self) -> dict[str, FBILinear]:
        return layers_of(self, FBILinear)

    def pack(self) -> "BiMambaForCausalLM":
        """Pack every latent projection in place (end of training); returns self."""
        return pack_layers(self, FBILinear)
