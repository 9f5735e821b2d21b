"""PyTorch reference of ``edgebit::ternary_linear`` and its torch.library registration.

The schema has a functional overload, an ``.out`` overload (ExecuTorch swaps it in) and fake kernels (torch.export
traces through them), so an exported model keeps each ternary linear layer as one node.
"""

from __future__ import annotations

import torch

from edgebit.quant.packing import unpack_planar
from edgebit.quant.activations import quantize_activations

NAMESPACE = "edgebit"
OP_NAME = "ternary_linear"

_lib = torch.library.Library(NAMESPACE, "FRAGMENT")
_lib.define(f"{OP_NAME}(Tensor x, Tensor w_packed, Tensor w_scale, int in_features) -> Tensor")
_lib.define(
    f"{OP_NAME}.out(Tensor x, Tensor w_packed, Tensor w_scale, int in_features, *, Tensor(a!) out) -> Tensor(a!)"
)


def ternary_linear_reference(
    x: torch.Tensor, w_packed: torch.Tensor, w_scale: torch.Tensor, in_features: int
) -> torch.Tensor:
    """out = (q(x) @ T^T) * (absmax(x) / 127) * w_scale, with q the int8 per-token quantizer and T the ternary matrix.

    Integer dot products are exact in float32 while K * 128 < 2**24, which covers every BitNet shape.
    """
    _check_shapes(x, w_packed, w_scale, in_features)
    codes, act_scale = quantize_activations(x)
    ternary = unpack_planar(w_packed, in_features).to(torch.float32)
    acc = codes @ ternary.T
    return acc / act_scale * w_scale.to(torch.float32)


def _check_shapes(x: torch.Tensor, w_packed: torch.Tensor, w_scale: torch.Tensor, in_features: int) -> None:
    if x.shape[-1] != in_features:
        raise ValueError(f"ternary_linear: x has {x.shape[-1]} features, the layer expects {in_features}")
    if w_packed.dtype != torch.uint8 or w_packed.dim() != 2 or w_packed.shape[1] * 4 < in_features:
        raise ValueError(f"ternary_linear: w_packed must be uint8 [N, >= ceil(K/4)], got {tuple(w_packed.shape)}")
    if w_scale.numel() != 1:
        raise ValueError("ternary_linear: w_scale must hold exactly one value (per-tensor scale)")


def _output_shape(x: torch.Tensor, w_packed: torch.Tensor) -> tuple[int, ...]:
    return (*x.shape[:-1], w_packed.shape[0])


@torch.library.impl(_lib, OP_NAME, "CompositeExplicitAutograd")
def _ternary_linear_impl(x, w_packed, w_scale, in_features):
    return ternary_linear_reference(x, w_packed, w_scale, in_features)


@torch.library.impl(_lib, f"{OP_NAME}.out", "CompositeExplicitAutograd")
def _ternary_linear_out_impl(x, w_packed, w_scale, in_features, *, out):
    result = ternary_linear_reference(x, w_packed, w_scale, in_features)
    out.resize_(result.shape)
    out.copy_(result)
    return out


@torch.library.register_fake(f"{NAMESPACE}::{OP_NAME}")
def _ternary_linear_fake(x, w_packed, w_scale, in_features):
    return x.new_empty(_output_shape(x, w_packed), dtype=torch.float32)


@torch.library.register_fake(f"{NAMESPACE}::{OP_NAME}.out")
def _ternary_linear_out_fake(x, w_packed, w_scale, in_features, *, out):
    return out


ternary_linear = torch.ops.edgebit.ternary_linear.default
