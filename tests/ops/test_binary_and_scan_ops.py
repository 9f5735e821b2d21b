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


def test_binary_linear_matches_numpy_spec():
    rng = np.random.default_rng(0)
    n, k = 9, 21
    signs = rng.choice([-1, 1], size=(n, k))
    alpha, beta = rng.uniform(0.1, 1, (1, k)), rng.normal(0, 0.1, (1, k))
    x = rng.normal(size=(2, 3, k)).astype(np.float32)
    expected = binary_reference.binary_linear_int8(x, signs, alpha, beta)
    out = binary_linear(torch.tensor(x), pack_signs(torch.tensor(signs)), torch.tensor(alpha, dtype=torch.float32),
                        torch.tensor(beta, dtype=torch.float32), k)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-5, atol=1e-5)


def test_int8_planes_stay_near_the_exact_product():
    """The SPEC's int8 activations (one scale per plane of K / 8 columns) against x @ W_hat^T in float64: within
    1 % of the output's scale at a Bi-Mamba-like width (quantization noise ~ absmax / 254 per activation)."""
    rng = np.random.default_rng(4)
    n, k = 64, 1024
    signs = rng.choice([-1, 1], size=(n, k))
    alpha, beta = rng.uniform(0.01, 0.1, (1, k)), rng.normal(0, 0.02, (1, k))
    x = rng.normal(size=(5, k)).astype(np.float32)
    exact = binary_reference.binary_linear(x, signs, alpha, beta)
    quantized = binary_reference.binary_linear_int8(x, signs, alpha, beta)
    error = np.abs(quantized - exact).max() / np.abs(exact).max()
    assert 1e-5 < error < 0.01, error  # quantized, and close


def test_selective_scan_matches_float64_recurrence():
    inputs = scan_reference.random_inputs(np.random.default_rng(1), batch=2, length=7, heads=4, head_dim=3,
                                          groups=2, size=5)
    expected_y, expected_state = scan_reference.selective_scan(*inputs)
    y, final = selective_scan(*(torch.tensor(a, dtype=torch.float32) for a in inputs))
    np.testing.assert_allclose(y.numpy(), expected_y, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(final.numpy(), expected_state, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("n,k", [(37, 70), (96, 512)])  # 70: Kq 9, one partial vector; 512: Kq 64, whole ones
def test_tvm_binary_te_matches_the_reference(n, k):
    """The tensor-expression form TVM compiles where the C++ kernel does not run (riscv64), built for the host."""
    import tvm
    from tvm import te

    from edgebit_ops.binary_matmul.tvm_kernel import binary_linear_te

    gen = torch.Generator().manual_seed(n)
    signs = torch.randint(0, 2, (n, k), generator=gen, dtype=torch.int8) * 2 - 1
    packed, alpha, beta = pack_signs(signs), torch.rand(1, k, generator=gen), torch.randn(1, k, generator=gen)
    x = torch.randn(3, k, generator=gen)
    tensors = [te.placeholder((3, k), "float32", "x"), te.placeholder(tuple(packed.shape), "uint8", "w"),
               te.placeholder((1, k), "float32", "a"), te.placeholder((1, k), "float32", "b")]
    out_te = binary_linear_te(*tensors, k)
    kernel = tvm.tirx.build(te.create_prim_func([*tensors, out_te]), target="llvm")
    out = tvm.runtime.tensor(np.zeros((3, n), np.float32))
    kernel(*(tvm.runtime.tensor(v.numpy()) for v in (x, packed, alpha, beta)), out)
    torch.testing.assert_close(torch.from_numpy(out.numpy()), binary_linear(x, packed, alpha, beta, k), rtol=1e-5,
                               atol=1e-4)


@pytest.mark.parametrize("isa,march", [("generic", "x86-64"), ("avx2", "haswell"), ("avx512vnni", "icelake-server")])
@pytest.mark.parametrize("case", sorted(binary_reference.cases()))
def test_tvm_extern_kernel_matches_the_numpy_spec(isa, march, case, tmp_path):
    """kernel.h on each x86 path (the generic one too), linked into a library as a model's is, for 4 tokens and for
    11 (more than one tile of tokens)."""
    import dataclasses

    import tvm

    from edgebit.runtimes.tvm.backend import _export
    from edgebit.runtimes.tvm.extern_kernels import ExternKernels
    from edgebit.targets import resolve_target
    from edgebit.toolchain.host_cpu import cpu_flags
    from edgebit_ops.binary_matmul.tvm_kernel import EXTERN_SOURCE, binary_extern_kernel

    if isa != "generic" and {"avx2": "avx2", "avx512vnni": "avx512_vnni"}[isa] not in cpu_flags():
        pytest.skip(f"this host cannot run {isa}")
    target = dataclasses.replace(resolve_target("x86_64"), cflags=(f"-march={march}",))
    x, w_signs, alpha, beta, k = binary_reference.cases()[case]
    n, kq = w_signs.shape
    extern = ExternKernels()
    extern.use(EXTERN_SOURCE)
    executable = tvm.compile(tvm.IRModule({"k": binary_extern_kernel(n, k, kq, "k")}),
                             target=tvm.target.Target({"kind": "llvm", "mcpu": march}))
    _export(executable, target, extern, tmp_path / "k.so")
    kernel = tvm.runtime.load_module(str(tmp_path / "k.so"))["k"]
    rng = np.random.default_rng(kq)
    for tokens in (x.reshape(-1, k), rng.standard_normal((11, k)).astype(np.float32)):
        out = tvm.runtime.tensor(np.zeros((tokens.shape[0], n), np.float32))
        kernel(*(tvm.runtime.tensor(a) for a in (tokens, w_signs, alpha, beta)), out)
        (expected,) = binary_reference.reference(tokens, w_signs, alpha, beta, k)
        assert np.abs(out.numpy() - expected).max() <= binary_reference.TOLERANCE * np.abs(expected).max()
