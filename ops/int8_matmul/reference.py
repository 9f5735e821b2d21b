"""PyTorch reference of ``edgebit::int8_linear``, the int8 row quantization of a table, and the torch.library
registration."""

from __future__ import annotations

import torch

ZERO_POINT = 128  # code = w + 128 (MatMulNBits' default zero point for bits = 8)
MAX_BLOCK = 128

_lib = torch.library.Library("edgebit", "FRAGMENT")
_lib.define("int8_linear(Tensor x, Tensor w_codes, Tensor w_scale, int in_features, int block_size) -> Tensor")
_lib.define("int8_linear.out(Tensor x, Tensor w_codes, Tensor w_scale, int in_features, int block_size, *, "
            "Tensor(a!) out) -> Tensor(a!)")


def block_size_for(in_features: int) -> int:
    """128, or the smallest power of two >= 16 covering ``in_features`` (MatMulNBits' block sizes)."""
    block = 16
    while block < min(in_features, MAX_BLOCK):
        block *= 2
    return block


def quantize_rows(weight: torch.Tensor, block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """float [N, K] -> (codes uint8 [N, Kp] = w + 128 with padding 128, w_scale float32 [N]): absmax per row."""
    weight = weight.detach().float()
    n, k = weight.shape
    scale = weight.abs().amax(dim=1) / 127.0
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    w = torch.round(weight / safe[:, None]).clamp(-127, 127).to(torch.int16)  # torch.round: half to even
    padded = -(-k // block_size) * block_size
    codes = torch.full((n, padded), ZERO_POINT, dtype=torch.uint8)
    codes[:, :k] = (w + ZERO_POINT).to(torch.uint8)
    return codes, scale


def quantize_blocks(x: torch.Tensor, padded: int, block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """SPEC steps 1-2: x [M, K] -> (q float [M, blocks, B] holding int8 values, d [M, blocks, 1])."""
    x = torch.nn.functional.pad(x.float(), (0, padded - x.shape[-1]))
    blocks = x.reshape(x.shape[0], padded // block_size, block_size)
    amax = blocks.abs().amax(dim=-1, keepdim=True)
    inverse = torch.where(amax > 0, 127.0 / torch.where(amax > 0, amax, torch.ones_like(amax)), torch.zeros_like(amax))
    q = torch.round(blocks * inverse).clamp(-127, 127)
    return q, amax / 127.0


def int8_linear_reference(x, w_codes, w_scale, in_features, block_size):
    leading = x.shape[:-1]
    n, padded = w_codes.shape
    q, d = quantize_blocks(x.reshape(-1, in_features), padded, block_size)
    w = (w_codes.to(torch.int32) - ZERO_POINT).reshape(n, padded // block_size, block_size)
    # exact integer block sums (float64 holds them exactly), then the float scales
    dots = torch.einsum("mbk,nbk->mnb", q.double(), w.double())  # [M, N, blocks]
    out = (dots * d.double().transpose(1, 2)).sum(-1) * w_scale.double()[None, :]
    return out.float().reshape(*leading, n)


@torch.library.impl(_lib, "int8_linear", "CompositeExplicitAutograd")
def _impl(x, w_codes, w_scale, in_features, block_size):
    return int8_linear_reference(x, w_codes, w_scale, in_features, block_size)


@torch.library.impl(_lib, "int8_linear.out", "CompositeExplicitAutograd")
def _impl_out(x, w_codes, w_scale, in_features, block_size, *, out):
    result = int8_linear_reference(x, w_codes, w_scale, in_features, block_size)
    return out.resize_(result.shape).copy_(result)


@torch.library.register_fake("edgebit::int8_linear")
def _fake(x, w_codes, w_scale, in_features, block_size):
    return x.new_empty((*x.shape[:-1], w_codes.shape[0]), dtype=torch.float32)


@torch.library.register_fake("edgebit::int8_linear.out")
def _fake_out(x, w_codes, w_scale, in_features, block_size, *, out):
    return out


int8_linear = torch.ops.edgebit.int8_linear.default
