"""BitNet b1.58 quantizers: int8 per-token activations and ternary per-tensor weights.

These are the numerical definitions every implementation (PyTorch reference, TVM kernels, runtime kernels) must
reproduce. They follow the BitNet b1.58 papers and the public checkpoints:

* activations: per token (last dim), ``scale = 127 / max(|x|, 1e-5)``, ``code = clamp(round(x * scale), -128, 127)``
  with round half to even (``torch.round``);
* weights: per tensor, ``gamma = max(mean(|W|), 1e-5)``, ``code = clamp(round(W * (1 / gamma)), -1, 1)``.

The ``*_ste`` variants return fake-quantized floats whose gradient is the identity (straight-through estimator),
which is what quantization-aware training needs.
"""

from __future__ import annotations

import torch

ACT_QMIN = -128
ACT_QMAX = 127
ACT_EPS = 1e-5
WEIGHT_EPS = 1e-5


def activation_scale(x: torch.Tensor) -> torch.Tensor:
    """Per-token multiplier that maps the token's absmax to 127 (shape [..., 1])."""
    return ACT_QMAX / x.abs().amax(dim=-1, keepdim=True).clamp(min=ACT_EPS)


def quantize_activations(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (int8 codes as float32, per-token scale); ``x ~= codes / scale``."""
    x = x.float()
    scale = activation_scale(x)
    codes = torch.round(x * scale).clamp(ACT_QMIN, ACT_QMAX)
    return codes, scale


def quantize_weights(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Absmean ternarization: return (codes in {-1, 0, 1} as int8, gamma as float32 [1]); ``W ~= codes * gamma``."""
    w = w.float()
    gamma = w.abs().mean().clamp(min=WEIGHT_EPS)
    codes = torch.round(w * (1.0 / gamma)).clamp(-1, 1).to(torch.int8)
    return codes, gamma.reshape(1)


def fake_quant_activations_ste(x: torch.Tensor) -> torch.Tensor:
    """Quantize-dequantize activations in the forward pass, identity gradient in the backward pass."""
    codes, scale = quantize_activations(x)
    q = (codes / scale).to(x.dtype)
    return x + (q - x).detach()


def fake_quant_weights_ste(w: torch.Tensor) -> torch.Tensor:
    """Ternarize-dequantize weights in the forward pass, identity gradient in the backward pass."""
    gamma = w.detach().abs().mean().clamp(min=WEIGHT_EPS)
    q = torch.round(w / gamma).clamp(-1, 1) * gamma
    return w + (q - w).detach()
