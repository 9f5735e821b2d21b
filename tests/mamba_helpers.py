"""Tiny Mamba-2 / Bi-Mamba models shared by the tests: transformers' Mamba2ForCausalLM (the public layout
edgebit binarizes) and its twin whose in/out_proj weights are a Bi-Mamba's W_hat, and random Bi-Mamba models.

A packed Bi-Mamba's projections quantize their activations to int8 per plane (ops/binary_matmul/SPEC.md); the twin's
projections then compute the same with the SPEC's numpy reference (a forward hook on transformers' own module), so
the comparison stays at float rounding while the reference stays independent of edgebit's code."""

from typing import NamedTuple

import numpy as np
import torch
from transformers import Mamba2Config, Mamba2ForCausalLM

from edgebit.models.bimamba.model import BiMambaConfig, BiMambaForCausalLM
from edgebit_ops.binary_matmul import numpy_reference as binary_reference

HF = dict(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_heads=8, head_dim=8, state_size=16, expand=2,
          n_groups=2, conv_kernel=4, tie_word_embeddings=True, chunk_size=4)


def hf_mamba2(seed=0):
    torch.manual_seed(seed)
    model = Mamba2ForCausalLM(Mamba2Config(**HF)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("dt_bias", "D")):
                p.normal_(0.5, 0.3)
    return model


class FBI(NamedTuple):
    """One FBI-Linear layer's signs [N, K] in {-1, +1} and its alpha, beta [1, K]."""
    signs: torch.Tensor
    alpha: torch.Tensor
    beta: torch.Tensor

    def w_hat(self) -> torch.Tensor:
        return (self.alpha * self.signs + self.beta).float()


def as_spec_projection(module, fbi: FBI) -> None:
    """Make transformers' projection ``module`` compute ``fbi`` as edgebit::binary_linear's SPEC does (int8
    activations per plane of ceil(K / 8) columns), from the numpy reference."""
    signs, alpha, beta = (np.asarray(t.detach().float().numpy()) for t in fbi)

    def hook(_module, inputs, _output):
        x = inputs[0].detach().float().numpy()
        return torch.from_numpy(binary_reference.binary_linear_int8(x, signs, alpha, beta).astype(np.float32))

    module.register_forward_hook(hook)


def with_w_hat(hf_model, layers: dict, quantized: bool = True):
    """A copy of a transformers Mamba2 whose in/out_proj are the :class:`FBI` layers of ``layers`` (keys:
    backbone.layers.i.mixer.X): W_hat as their weights, computed as the SPEC does unless ``quantized`` is False."""
    twin = Mamba2ForCausalLM(hf_model.config).eval()
    state = {k: v.clone() for k, v in hf_model.state_dict().items()}
    for key, fbi in layers.items():
        state[key + ".weight"] = fbi.w_hat()
    twin.load_state_dict(state)
    if quantized:
        for key, fbi in layers.items():
            as_spec_projection(twin.get_submodule(key), fbi)
    return twin


def w_hat_of(model) -> dict:
    """A Bi-Mamba's in/out_proj as :class:`FBI`, keyed as transformers' Mamba2 names them (for :func:`with_w_hat`)."""
    return {f"backbone.layers.{i}.mixer.{p}": FBI(layer.signs().float(), layer.alpha.detach(), layer.beta.detach())
            for i, block in enumerate(model.layers) for p in ("in_proj", "out_proj")
            for layer in (getattr(block.mixer, p),)}


def binarized_twin(hf_model, binarized):
    """``hf_model`` with the W_hat of ``binarized`` (a Bi-Mamba made from it) and its embeddings (a binarized
    checkpoint stores them in float16: the twin uses the same)."""
    twin = with_w_hat(hf_model, w_hat_of(binarized))
    with torch.no_grad():
        twin.backbone.embeddings.weight.copy_(binarized.embeddings.weight)
    return twin


SHAPES = {"groups2": dict(vocab_size=80, hidden_size=32, num_hidden_layers=2, num_heads=8, head_dim=8,
                          state_size=16, expand=2, n_groups=2, conv_kernel=4),
          "groups1-odd": dict(vocab_size=57, hidden_size=24, num_hidden_layers=3, num_heads=6, head_dim=8,
                              state_size=12, expand=2, n_groups=1, conv_kernel=3)}


def random_bimamba(shape, seed=0):
    torch.manual_seed(seed)
    model = BiMambaForCausalLM(BiMambaConfig(**shape)).eval()
    with torch.no_grad():
        for layer in model.binary_layers().values():
            layer.alpha.uniform_(0.02, 0.1)
            layer.beta.normal_(0, 0.02)
        for block in model.layers:
            block.mixer.dt_bias.normal_(0, 0.5)
            block.mixer.D.normal_(1, 0.2)
            block.mixer.conv1d.weight.normal_(0, 0.3)
            block.norm.weight.normal_(1, 0.1)
    return model


def transformers_twin(model):
    """transformers' Mamba2 with every weight copied and in_proj/out_proj set to W_hat (computed as the SPEC does
    where ``model`` is packed)."""
    c = model.config
    hf = Mamba2ForCausalLM(Mamba2Config(vocab_size=c.vocab_size, hidden_size=c.hidden_size,
                                        num_hidden_layers=c.num_hidden_layers, num_heads=c.num_heads,
                                        head_dim=c.head_dim, state_size=c.state_size, expand=c.expand,
                                        n_groups=c.n_groups, conv_kernel=c.conv_kernel, tie_word_embeddings=True,
                                        chunk_size=4, layer_norm_epsilon=c.layer_norm_epsilon)).eval()
    state = {"backbone.embeddings.weight": model.embeddings.weight, "backbone.norm_f.weight": model.norm_f.weight}
    for i, block in enumerate(model.layers):
        prefix = f"backbone.layers.{i}."
        state[prefix + "norm.weight"] = block.norm.weight
        mixer = dict(block.mixer.named_parameters())
        for name in ("conv1d.weight", "conv1d.bias", "dt_bias", "A_log", "D", "norm.weight"):
            state[prefix + "mixer." + name] = mixer[name]
        state[prefix + "mixer.in_proj.weight"] = block.mixer.in_proj.dense_weight()
        state[prefix + "mixer.out_proj.weight"] = block.mixer.out_proj.dense_weight()
    result = hf.load_state_dict({k: v.detach().clone() for k, v in state.items()}, strict=False)
    assert not result.unexpected_keys and set(result.missing_keys) <= {"lm_head.weight"}
    if model.layers[0].mixer.in_proj.is_packed:
        for key, fbi in w_hat_of(model).items():
            as_spec_projection(hf.get_submodule(key), fbi)
    return hf
