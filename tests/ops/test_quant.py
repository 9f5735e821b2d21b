"""The quantizers against numpy written from the BitNet b1.58 definitions."""

import numpy as np
import torch

from edgebit.quant.activations import fake_quant_weights_ste, quantize_activations, quantize_weights
from edgebit_ops.ternary_matmul import numpy_reference as ternary_reference


def test_activation_codes_match_numpy_definition():
    x = torch.randn(5, 33, generator=torch.Generator().manual_seed(0)) * 3
    codes, scale = quantize_activations(x)
    expected, s = ternary_reference.quantize_activations(x.numpy())  # SPEC.md steps 1-2, round half to even
    np.testing.assert_array_equal(codes.numpy(), expected)
    np.testing.assert_allclose(scale.numpy(), s, rtol=1e-6)


def test_activation_rounding_is_half_to_even():
    # absmax 127 makes the scale exactly 1, so the codes are round(x) itself.
    x = torch.tensor([[0.5, 1.5, 2.5, -0.5, -1.5, 127.0]])
    codes, _ = quantize_activations(x)
    assert codes.tolist() == [[0.0, 2.0, 2.0, -0.0, -2.0, 127.0]]


def test_weight_ternarization_absmean():
    w = torch.randn(16, 24, generator=torch.Generator().manual_seed(1))
    codes, gamma = quantize_weights(w)
    g = np.abs(w.numpy()).mean()
    assert abs(gamma.item() - g) < 1e-6
    np.testing.assert_array_equal(codes.numpy(), np.clip(np.round(w.numpy() / g), -1, 1))


def test_straight_through_estimator_passes_gradients():
    w = torch.randn(8, 8, requires_grad=True)
    fake_quant_weights_ste(w).sum().backward()
    assert torch.equal(w.grad, torch.ones_like(w))
