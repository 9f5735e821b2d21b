"""edgebit::binary_linear and edgebit::selective_scan against the numpy references of their SPEC.md
(ops/<op>/numpy_reference.py)."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from edgebit_ops.binary_matmul import binary_linear, pack_signs, unpack_signs
from edgebit_ops.binary_matmul import numpy_reference as binary_reference
from edgebit_ops.selective_scan import numpy_reference as scan_reference
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
    expected = binary_reference.binary_linear(x, signs, alpha, beta)
    out = binary_linear(torch.tensor(x, dtype=torch.float32), pack_signs(torch.tensor(signs)),
                        torch.tensor(alpha, dtype=torch.float32), torch.tensor(beta, dtype=torch.float32), k)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-5, atol=1e-5)


def test_selective_scan_matches_float64_recurrence():
    inputs = scan_reference.random_inputs(np.random.default_rng(1), batch=2, length=7, heads=4, head_dim=3,
                                          groups=2, size=5)
    expected_y, expected_state = scan_reference.selective_scan(*inputs)
    y, final = selective_scan(*(torch.tensor(a, dtype=torch.float32) for a in inputs))
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
