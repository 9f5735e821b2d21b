"""PyTorch reference of ``edgebit::binary_linear`` (activations quantized to int8 per plane, SPEC.md), the planar
1-bit sign layout, and the torch.library registration."""

from __future__ import annotations

import torch

from edgebit_ops.int8_matmul.reference import quantize_blocks

BITS = 8
_lib = torch.library.Library("edgebit", "FRAGMENT")
_lib.define("binary_linear(Tensor x, Tensor w_signs, Tensor alpha, Tensor beta, int in_features) -> Tensor")
_lib.define("binary_linear.out(Tensor x, Tensor w_signs, Tensor alpha, Tensor beta, int in_features, *, "
            "Tensor(a!) out) -> Tensor(a!)")


def pack_signs(signs: torch.Tensor) -> torch.Tensor:
    """Signs [N, K] in {-1, +1} -> planar uint8 [N, ceil(K/8)] (bit j of byte b = column j * Kq + b)."""
    n, k = signs.shape
    if bool((signs == 0).any()):
        raise ValueError(f"{int((signs == 0).sum())} weights are exactly 0; one bit cannot store sign(0) = 0")
    kq = -(-k // BITS)
    bits = torch.zeros((n, kq * BITS), dtype=torch.uint8)
    bits[:, :k] = (signs > 0).to(torch.uint8)
    planes = bits.reshape(n, BITS, kq)
    packed = torch.zeros((n, kq), dtype=torch.uint8)
    for j in range(BITS):
        packed |= planes[:, j] << j
    return packed


def unpack_signs(packed: torch.Tensor, in_features: int) -> torch.Tensor:
    n, kq = packed.shape
    planes = torch.stack([(packed >> j) & 1 for j in range(BITS)], dim=1).reshape(n, kq * BITS)[:, :in_features]
    return planes.to(torch.int8) * 2 - 1


def binary_linear_reference(x, w_signs, alpha, beta, in_features):
    leading = x.shape[:-1]
    n, kq = w_signs.shape
    x = x.float().reshape(-1, in_features)
    q, d = quantize_blocks(x * alpha.reshape(-1), BITS * kq, kq)  # SPEC steps 1-2: the planes are the blocks
    dots = torch.zeros(x.shape[0], n, dtype=torch.float64)
    for j in range(BITS):  # P_j = sum of plane j's codes where the sign is +1: exact in float32 (|P_j| < 2^24)
        positive = q[:, j] @ ((w_signs >> j) & 1).float().T
        dots += (2 * positive - q[:, j].sum(-1, keepdim=True)).double() * d[:, j].double()
    out = dots + (x.double() * beta.double().reshape(-1)).sum(-1, keepdim=True)
    return out.float().reshape(*leading, n)


@torch.library.impl(_lib, "binary_linear", "CompositeExplicitAutograd")
def _impl(x, w_signs, alpha, beta, in_features):
    return binary_linear_reference(x, w_signs, alpha, beta, in_features)


@torch.library.impl(_lib, "binary_linear.out", "CompositeExplicitAutograd")
def _impl_out(x, w_signs, alpha, beta, in_features, *, out):
    result = binary_linear_reference(x, w_signs, alpha, beta, in_features)
    return out.resize_(result.shape).copy_(result)


@torch.library.register_fake("edgebit::binary_linear")
def _fake(x, w_signs, alpha, beta, in_features):
    return x.new_empty((*x.shape[:-1], w_signs.shape[0]), dtype=torch.float32)


@torch.library.register_fake("edgebit::binary_linear.out")
def _fake_out(x, w_signs, alpha, beta, in_features, *, out):
    return out


binary_linear = torch.ops.edgebit.binary_linear.default
