"""PyTorch reference of ``edgebit::q4_linear``, the 4-bit block quantization of a table (SPEC.md), and the
torch.library registration."""

from __future__ import annotations

import torch

from edgebit_ops.int8_matmul.reference import quantize_blocks

ZERO_POINT = 8  # code = w + 8 (MatMulNBits' default zero point for bits = 4)
BLOCK_SIZES = (32, 64, 128)
SCALE_FACTORS = tuple(0.7 + 0.025 * i for i in range(19))  # SPEC: s = max|W| / 7 * f, the least squared error wins

_lib = torch.library.Library("edgebit", "FRAGMENT")
_lib.define("q4_linear(Tensor x, Tensor w_codes, Tensor w_scale, int in_features, int block_size) -> Tensor")
_lib.define("q4_linear.out(Tensor x, Tensor w_codes, Tensor w_scale, int in_features, int block_size, *, "
            "Tensor(a!) out) -> Tensor(a!)")


def block_size_for(in_features: int) -> int:
    """64 (4.5 bits a weight with its float32 scale), or 32 for rows of at most 32 columns."""
    return 32 if in_features <= 32 else 64


def quantize_blocks_q4(weight: torch.Tensor, block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """float [N, K] -> (codes uint8 [N, Kp / 2] in the SPEC's nibble order, w_scale float32 [N, Kp / B])."""
    weight = weight.detach().float()
    n, k = weight.shape
    padded = -(-k // block_size) * block_size
    blocks = torch.nn.functional.pad(weight, (0, padded - k)).reshape(n, padded // block_size, block_size)
    amax = blocks.abs().amax(dim=-1, keepdim=True)
    best_w = torch.zeros_like(blocks)
    best_scale = torch.zeros_like(amax)
    best_error = torch.full_like(amax, float("inf"))
    for factor in SCALE_FACTORS:
        scale = amax / 7.0 * torch.tensor(factor, dtype=torch.float32)
        safe = torch.where(scale > 0, scale, torch.ones_like(scale))
        w = torch.round(blocks / safe).clamp(-8, 7)  # torch.round: half to even
        error = ((w * scale - blocks) ** 2).sum(dim=-1, keepdim=True)
        better = error < best_error  # strictly: the first factor wins ties
        best_w = torch.where(better, w, best_w)
        best_scale = torch.where(better, scale, best_scale)
        best_error = torch.where(better, error, best_error)
    best_w = torch.where(amax > 0, best_w, torch.zeros_like(best_w))
    codes = (best_w + ZERO_POINT).to(torch.uint8)
    half = block_size // 2
    packed = codes[..., :half] | (codes[..., half:] << 4)
    return packed.reshape(n, padded // 2).contiguous(), best_scale.reshape(n, -1).contiguous()


def unpack_codes(w_codes: torch.Tensor, block_size: int) -> torch.Tensor:
    """uint8 [N, Kp / 2] -> signed weights int32 [N, Kp / B, B] (code - 8)."""
    n = w_codes.shape[0]
    halves = w_codes.reshape(n, -1, block_size // 2).to(torch.int32)
    return torch.cat([halves & 15, halves >> 4], dim=-1) - ZERO_POINT


def q4_linear_reference(x, w_codes, w_scale, in_features, block_size):
    leading = x.shape[:-1]
    n = w_codes.shape[0]
    padded = w_codes.shape[1] * 2
    q, d = quantize_blocks(x.reshape(-1, in_features), padded, block_size)
    w = unpack_codes(w_codes, block_size)
    # exact integer block sums (float64 holds them exactly), then the float scales
    dots = torch.einsum("mbk,nbk->mnb", q.double(), w.double())  # [M, N, blocks]
    out = (dots * d.double().transpose(1, 2) * w_scale.double()[None]).sum(-1)
    return out.float().reshape(*leading, n)


@torch.library.impl(_lib, "q4_linear", "CompositeExplicitAutograd")
def _impl(x, w_codes, w_scale, in_features, block_size):
    return q4_linear_reference(x, w_codes, w_scale, in_features, block_size)


@torch.library.impl(_lib, "q4_linear.out", "CompositeExplicitAutograd")
def _impl_out(x, w_codes, w_scale, in_features, block_size, *, out):
    result = q4_linear_reference(x, w_codes, w_scale, in_features, block_size)
    return out.resize_(result.shape).copy_(result)


@torch.library.register_fake("edgebit::q4_linear")
def _fake(x, w_codes, w_scale, in_features, block_size):
    return x.new_empty((*x.shape[:-1], w_codes.shape[0]), dtype=torch.float32)


@torch.library.register_fake("edgebit::q4_linear.out")
def _fake_out(x, w_codes, w_scale, in_features, block_size, *, out):
    return out


q4_linear = torch.ops.edgebit.q4_linear.default
