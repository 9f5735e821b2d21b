"""Building blocks shared by the model families."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class RMSNorm(nn.Module):
    """``weight * x / sqrt(mean(x^2) + eps)``, computed in float32. Written with a division, not ``rsqrt``: ONNX Runtime
    fuses exactly this pattern (Pow, ReduceMean, Add, Sqrt, Div, Mul) into one SimplifiedLayerNormalization kernel;
    ``rsqrt`` exports as Sqrt + Reciprocal, which it does not."""

    def __init__(self, size: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        return self.weight * (x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


def layers_of(model: nn.Module, layer_class: type) -> dict[str, nn.Module]:
    """The ``layer_class`` modules of ``model`` by qualified name (a family's packed projections)."""
    return {name: m for name, m in model.named_modules() if isinstance(m, layer_class)}


def pack_layers(model: nn.Module, layer_class: type) -> nn.Module:
    """Pack every still-latent ``layer_class`` module of ``model`` in place (end of training); returns ``model``."""
    for layer in layers_of(model, layer_class).values():
        if not layer.is_packed:
            layer.pack()
    return model
