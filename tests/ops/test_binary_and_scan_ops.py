"""edgebit::binary_linear and edgebit::selective_scan against numpy written from their definitions."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from edgebit_ops.binary_matmul import binary_linear, pack_signs, unpack_signs
from edgebit_ops.selective_scan import selective_scan


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 7), st.integers(1, 50), st.integers(0, 2**31))
def test_sign_packing_round_trip(n, k, seed):
    signs = torch.randint(0, 2, (n, k), generator=torch.Generator().manual_seed(seed), dtype=torch.int8) * 2 - 1
    packed = pack_signs(signs)
    assert packed.shape == (n, -(-k // 8))
    assert torch.equal(unpack_signs(packed, k), signs)


def test_zero_sign_cannot_be_packed():
    with pytest.raises(ValueError, match="exactly 0"):
        pack_signs(torch.tensor([[1, 0, -1]]))


def test_binary_linear_matches_numpy_w_hat():
    rng = np.random.default_rng(0)
    n, k = 9, 21
    signs = rng.choice([-1, 1], size=(n, k))
    alpha, beta = rng.uniform(0.1, 1, (1, k)), rng.normal(0, 0.1, (1, k))
    x = rng.normal(size=(2, 3, k))
    expected = x @ (alpha * signs + beta).T
    out = binary_linear(torch.tensor(x, dtype=torch.float32), pack_signs(torch.tensor(signs)),
                        torch.tensor(alpha, dtype=torch.float32), torch.tensor(beta, dtype=torch.float32), k)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-5, atol=1e-5)


def numpy_scan(x, dt, A, B, C, D, state):
    """float64 recurrence: S = S exp(dt A) + dt x B^T; y = S C + D x (head h uses group h // (H/G))."""
    batch, length, heads, _ = x.shape
    per_group = heads // B.shape[2]
    s = state.astype(np.float64).copy()
    y = np.zeros(x.shape)
    for b in range(batch):
        for t in range(length):
            for h in range(heads):
                g = h // per_group
                s[b, h] = s[b, h] * np.exp(dt[b, t, h] * A[h]) + dt[b, t, h] * np.outer(x[b, t, h], B[b, t, g])
                y[b, t, h] = s[b, h] @ C[b, t, g] + D[h] * x[b, t, h]
    return y, s


def test_selective_scan_matches_float64_recurrence():
    rng = np.random.default_rng(1)
    batch, length, heads, p, groups, n = 2, 7, 4, 3, 2, 5
    x = rng.normal(size=(batch, length, heads, p))
    dt = rng.uniform(0.01, 0.5, (batch, length, heads))
    A = -rng.uniform(0.5, 4, heads)
    B, C = rng.normal(size=(batch, length, groups, n)), rng.normal(size=(batch, length, groups, n))
    D = rng.normal(size=heads)
    state = rng.normal(size=(batch, heads, p, n))
    expected_y, expected_state = numpy_scan(x, dt, A, B, C, D, state)
    f32 = lambda a: torch.tensor(a, dtype=torch.float32)
    y, final = selective_scan(f32(x), f32(dt), f32(A), f32(B), f32(C), f32(D), f32(state))
    np.testing.assert_allclose(y.numpy(), expected_y, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(final.numpy(), expected_state, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("n,k", [(37, 70), (96, 512)])  # 70: Kq 9 < 16 lanes (tail only); 512: full vectors
def test_tvm_binary_kernel_matches_the_reference(n, k):
    import tvm

    from edgebit_ops.binary_matmul.tvm_kernel import binary_linear_kernel

    gen = torch.Generator().manual_seed(n)
    signs = torch.randint(0, 2, (n, k), generator=gen, dtype=torch.int8) * 2 - 1
    packed, alpha, beta = pack_signs(signs), torch.rand(1, k, generator=gen), torch.randn(1, k, generator=gen)
    x = torch.randn(3, k, generator=gen)
    kernel = tvm.tirx.build(binary_linear_kernel(n, k, packed.shape[1], "k"),
                       target=tvm.target.Target({"kind": "llvm", "mcpu": "haswell"}))["k"]
    out = torch.empty(3, n)
    kernel(x, packed, alpha, beta, out)
    torch.testing.assert_close(out, binary_linear(x, packed, alpha, beta, k), rtol=1e-5, atol=1e-4)
