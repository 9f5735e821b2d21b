"""The chunked (SSD) selective scan against the float64 numpy recurrence of SPEC.md (numpy_reference.py), and its
gradients against autograd through the sequential reference."""

import numpy as np
import pytest
import torch

from edgebit_ops.selective_scan import numpy_reference as scan_reference
from edgebit_ops.selective_scan.reference import selective_scan_chunked, selective_scan_reference


def random_inputs(length, groups, seed):
    return scan_reference.random_inputs(np.random.default_rng(seed), batch=2, length=length, heads=4, head_dim=3,
                                        groups=groups, size=5)


@pytest.mark.parametrize("chunk_size", [16, 64])
@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("length", [1, 5, 64, 130])
def test_chunked_matches_float64_recurrence(length, groups, chunk_size):
    inputs = random_inputs(length, groups, seed=length * 10 + groups)
    expected_y, expected_state = scan_reference.selective_scan(*inputs)
    y, final = selective_scan_chunked(*(torch.tensor(a, dtype=torch.float32) for a in inputs),
                                      chunk_size=chunk_size)
    assert y.shape == expected_y.shape and final.shape == expected_state.shape
    np.testing.assert_allclose(y.numpy(), expected_y, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(final.numpy(), expected_state, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("length", [5, 130])
def test_chunked_gradients_match_the_sequential_reference(length, groups):
    inputs = random_inputs(length, groups, seed=7 + length + groups)
    grads = []
    for scan in (selective_scan_chunked, selective_scan_reference):
        tensors = [torch.tensor(a, dtype=torch.float32, requires_grad=True) for a in inputs]
        y, final = scan(*tensors)
        weights = torch.Generator().manual_seed(length)
        loss = (y * torch.randn(y.shape, generator=weights)).sum() + (final * torch.randn(final.shape,
                                                                                        generator=weights)).sum()
        loss.backward()
        grads.append([t.grad for t in tensors])
    for name, chunked, sequential in zip("x dt A B C D state".split(), *grads):
        error = (chunked - sequential).abs().max().item() / sequential.abs().max().item()
        assert error < 1e-4, (name, error)
