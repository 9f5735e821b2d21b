"""The chunked (SSD) selective scan against a float64 numpy recurrence written here from SPEC.md, and its gradients
against autograd through the sequential reference."""

import numpy as np
import pytest
import torch

from edgebit_ops.selective_scan.reference import selective_scan_chunked, selective_scan_reference


def numpy_recurrence(x, dt, A, B, C, D, state):
    """S = S * exp(dt A) + dt x (outer) B, y = S @ C + D x, token by token, head h reading group h // (H / G)."""
    batch, length, heads, _ = x.shape
    per_group = heads // B.shape[2]
    S = state.copy()
    y = np.zeros_like(x)
    for b in range(batch):
        for t in range(length):
            for h in range(heads):
                g = h // per_group
                S[b, h] = S[b, h] * np.exp(dt[b, t, h] * A[h]) + dt[b, t, h] * np.outer(x[b, t, h], B[b, t, g])
                y[b, t, h] = S[b, h] @ C[b, t, g] + D[h] * x[b, t, h]
    return y, S


def random_inputs(length, groups, seed):
    rng = np.random.default_rng(seed)
    batch, heads, p, n = 2, 4, 3, 5
    return (rng.normal(size=(batch, length, heads, p)), rng.uniform(0.01, 0.5, (batch, length, heads)),
            -rng.uniform(0.5, 4, heads), rng.normal(size=(batch, length, groups, n)),
            rng.normal(size=(batch, length, groups, n)), rng.normal(size=heads),
            rng.normal(size=(batch, heads, p, n)))


@pytest.mark.parametrize("chunk_size", [16, 64])
@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("length", [1, 5, 64, 130])
def test_chunked_matches_float64_recurrence(length, groups, chunk_size):
    inputs = random_inputs(length, groups, seed=length * 10 + groups)
    expected_y, expected_state = numpy_recurrence(*inputs)
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
