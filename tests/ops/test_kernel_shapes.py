"""The one C++ kernel per operator (ops/<op>/kernel.h) through the real built libraries: inputs whose shapes do
not fit each other are errors from ONNX Runtime (a status) and from ExecuTorch (a failed call), never a crash; and
the widest SIMD path this host can run (AVX-512 VNNI: the x86_64-avx512 target's cflags) matches the SPEC."""

import ctypes

import numpy as np
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper

from edgebit.runtimes.executorch import build as executorch_build
from edgebit.runtimes.onnx import build as ort_build
from edgebit.targets import resolve_target
from edgebit.toolchain.host_cpu import host_tvm_cpu
from edgebit_ops.binary_matmul import numpy_reference as binary_reference
from edgebit_ops.int8_matmul import numpy_reference as int8_reference
from edgebit_ops.q4_matmul import numpy_reference as q4_reference
from edgebit_ops.ternary_matmul import numpy_reference as ternary_reference

F32, U8 = TensorProto.FLOAT, TensorProto.UINT8
pytestmark = pytest.mark.slow  # builds the libraries


@pytest.fixture(scope="module")
def library():
    return str(ort_build.build_ops_library(resolve_target("x86_64")))


def run_node(library, op, inputs: dict, outputs=("y",), **attributes):
    node = helper.make_node(op, list(inputs), list(outputs), domain="edgebit", **attributes)
    types = {np.dtype(np.uint8): U8, np.dtype(np.float32): F32}
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info(n, types[v.dtype], None)
                                            for n, v in inputs.items()],
                              [helper.make_tensor_value_info(n, F32, None) for n in outputs])
    model = helper.make_model(graph, ir_version=10, opset_imports=[helper.make_opsetid("", 17),
                                                                     helper.make_opsetid("edgebit", 1)])
    options = ort.SessionOptions()
    options.register_custom_ops_library(library)
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, inputs)


def ones(*shape, dtype=np.float32):
    return np.ones(shape, dtype)


def scan_inputs(**override):
    shapes = {"x": (1, 3, 4, 5), "dt": (1, 3, 4), "A": (4,), "B": (1, 3, 2, 6), "C": (1, 3, 2, 6), "D": (4,),
              "state": (1, 4, 5, 6)}
    shapes.update(override)
    return {name: np.full(shape, 0.1, np.float32) for name, shape in shapes.items()}


@pytest.mark.parametrize("op,inputs,attributes,message", [
    ("TernaryMatMul", {"x": ones(2, 9), "w": ones(3, 2, dtype=np.uint8), "s": ones(1)}, {"in_features": 9},
     r"w_packed \[3, 2\] must be \[N, Kq\] with 4 \* Kq >= in_features = 9"),
    ("TernaryMatMul", {"x": ones(2, 8), "w": ones(3, 2, dtype=np.uint8), "s": ones(2)}, {"in_features": 8},
     "w_scale must hold one value"),
    ("TernaryMatMul", {"x": ones(2, 8), "w": ones(3, 2, 1, dtype=np.uint8), "s": ones(1)}, {"in_features": 8},
     "w_packed"),
    ("Int8MatMul", {"x": ones(2, 20), "w": ones(3, 20, dtype=np.uint8), "s": ones(3)},
     {"in_features": 20, "block_size": 16}, r"w_codes \[3, 20\] must be \[N, 32\]"),
    ("Int8MatMul", {"x": ones(2, 20), "w": ones(3, 32, dtype=np.uint8), "s": ones(1)},
     {"in_features": 20, "block_size": 16}, r"w_scale must hold one value per row \(3\), has 1"),
    ("Int8MatMul", {"x": ones(2, 20), "w": ones(3, 32, dtype=np.uint8), "s": ones(3)},
     {"in_features": 20, "block_size": 24}, "block_size must be a power of two"),
    ("Q4MatMul", {"x": ones(2, 20), "w": ones(3, 20, dtype=np.uint8), "s": ones(3, 1)},
     {"in_features": 20, "block_size": 32}, r"w_codes \[3, 20\] must be \[N, 16\]"),
    ("Q4MatMul", {"x": ones(2, 20), "w": ones(3, 16, dtype=np.uint8), "s": ones(3)},
     {"in_features": 20, "block_size": 32}, r"w_scale \[3\] must be \[3, 1\]"),
    ("Q4MatMul", {"x": ones(2, 20), "w": ones(3, 16, dtype=np.uint8), "s": ones(3, 1)},
     {"in_features": 20, "block_size": 16}, "block_size must be 32, 64 or 128"),
    ("BinaryMatMul", {"x": ones(1, 16), "w": ones(4, 1, dtype=np.uint8), "a": ones(1, 16), "b": ones(1, 16)},
     {"in_features": 16}, r"w_signs \[4, 1\] must be \[N, Kq\] with 8 \* Kq >= in_features = 16"),
    ("BinaryMatMul", {"x": ones(1, 16), "w": ones(4, 2, dtype=np.uint8), "a": ones(1, 15), "b": ones(1, 16)},
     {"in_features": 16}, "alpha and beta must be"),
    ("BinaryMatMul", {"x": ones(1, 15), "w": ones(4, 2, dtype=np.uint8), "a": ones(1, 16), "b": ones(1, 16)},
     {"in_features": 16}, r"x \[1, 15\] must end in in_features = 16"),
])
def test_mismatched_matmul_shapes_are_onnxruntime_errors(library, op, inputs, attributes, message):
    with pytest.raises(Exception, match=f"{op}: {message}"):
        run_node(library, op, inputs, **attributes)


@pytest.mark.parametrize("override,message", [
    ({"state": (1, 4, 5, 7)}, r"state \[1, 4, 5, 7\] must be \[Bt, H, P, N\] = \[1, 4, 5, 6\]"),
    ({"C": (1, 3, 2, 5)}, "B .* and C .* must be"),
    ({"B": (1, 2, 2, 6), "C": (1, 2, 2, 6)}, r"B \[1, 2, 2, 6\] and C .* must be \[Bt, T, G, N\]"),
    ({"dt": (1, 3, 5)}, r"dt \[1, 3, 5\] must be \[Bt, T, H\]"),
    ({"A": (3,)}, "A and D must hold one value per head"),
    ({"B": (1, 3, 3, 6), "C": (1, 3, 3, 6)}, r"heads \(4\) must be a multiple of groups \(3\)"),
    ({"x": (1, 3, 4)}, r"x \[1, 3, 4\], B .* must be 4-D"),
])
def test_mismatched_scan_shapes_are_onnxruntime_errors(library, override, message):
    with pytest.raises(Exception, match=f"SelectiveScan: {message}"):
        run_node(library, "SelectiveScan", scan_inputs(**override), outputs=("y", "final"))


def test_scan_with_fitting_shapes_runs(library):
    y, final = run_node(library, "SelectiveScan", scan_inputs(), outputs=("y", "final"))
    assert y.shape == (1, 3, 4, 5) and final.shape == (1, 4, 5, 6)


@pytest.mark.skipif("avx512vnni" not in host_tvm_cpu()[1], reason="the host has no AVX-512 VNNI")
@pytest.mark.parametrize("k,kq", [(1024, 256), (2752 + 3, 700)])  # 64-byte VNNI blocks, then AVX2 and scalar tails
def test_vnni_library_matches_the_spec(k, kq):
    library = str(ort_build.build_ops_library(resolve_target("x86_64-avx512")))
    rng = np.random.default_rng(k)
    n = 70
    w = rng.integers(-1, 2, (n, k))
    x = (rng.standard_normal((2, 3, k)) * 5).astype(np.float32)
    packed = ternary_reference.pack_planar(w, kq, rng)
    for tokens in (x, x[:1, :1], x[:1]):  # the prefill blocks of 4 tokens; decode's blocks of 4 rows (70 = 17 x 4 + 2)
        (y,) = run_node(library, "TernaryMatMul", {"x": tokens, "w": packed, "s": np.array([0.37], np.float32)},
                        in_features=k)
        reference = ternary_reference.ternary_linear(tokens, w, np.float32(0.37))
        assert np.abs(y - reference).max() <= 1e-6 * np.abs(reference).max(), tokens.shape
    signs = rng.choice([-1, 1], (n, k))
    alpha, beta = rng.uniform(0.01, 0.2, (1, k)).astype(np.float32), rng.normal(0, 0.05, (1, k)).astype(np.float32)
    (y,) = run_node(library, "BinaryMatMul", {"x": x, "w": binary_reference.pack_signs(signs, (k + 7) // 8),
                                              "a": alpha, "b": beta}, in_features=k)
    reference = binary_reference.binary_linear_int8(x, signs, alpha, beta)
    assert np.abs(y - reference).max() <= 1e-5 * np.abs(reference).max()
    codes, scale = int8_reference.quantize_rows(rng.standard_normal((n, k)).astype(np.float32), 128)
    (y,) = run_node(library, "Int8MatMul", {"x": x, "w": codes, "s": scale}, in_features=k, block_size=128)
    (reference,) = int8_reference.reference(x, codes, scale, k, 128)
    assert np.abs(y - reference).max() <= int8_reference.TOLERANCE * np.abs(reference).max()
    codes, scale = q4_reference.quantize_rows(rng.standard_normal((n, k)).astype(np.float32), 64)
    for tokens in (x, x[:1, :1]):  # the four-row VNNI groups (70 = 17 x 4 + 2) for six tokens and for one
        (y,) = run_node(library, "Q4MatMul", {"x": tokens, "w": codes, "s": scale}, in_features=k, block_size=64)
        (reference,) = q4_reference.reference(tokens, codes, scale, k, 64)
        assert np.abs(y - reference).max() <= q4_reference.TOLERANCE * np.abs(reference).max()


# ---- ExecuTorch: the same checks (the fake kernels check nothing, so such programs export) ----

@pytest.fixture(scope="module")
def executorch_runtime():
    from executorch.extension.pybindings import portable_lib

    library = executorch_build.build(resolve_target("x86_64")) / "lib" / executorch_build.KERNEL_LIBRARY
    ctypes.CDLL(str(library), mode=ctypes.RTLD_GLOBAL)
    return portable_lib


def run_exported(runtime, fn, *inputs):
    from executorch.exir import to_edge

    class Op(torch.nn.Module):
        def forward(self, *args):
            return fn(*args)

    program = to_edge(torch.export.export(Op(), inputs)).to_executorch().buffer
    return runtime._load_for_executorch_from_buffer(program).forward(inputs)


def test_mismatched_shapes_are_executorch_errors(executorch_runtime):
    w = torch.zeros(3, 2, dtype=torch.uint8)
    with pytest.raises(Exception):  # x [2, 8] against in_features 9 (and 4 * Kq = 8 < 9)
        run_exported(executorch_runtime, lambda x: torch.ops.edgebit.ternary_linear(x, w, torch.ones(1), 9),
                     torch.ones(2, 8))
    alpha = torch.ones(1, 15)
    with pytest.raises(Exception):  # alpha [1, 15] against in_features 16
        run_exported(executorch_runtime, lambda x: torch.ops.edgebit.binary_linear(x, w, alpha, torch.ones(1, 16), 16),
                     torch.ones(1, 16))
    inputs = {name: torch.from_numpy(v) for name, v in scan_inputs(C=(1, 3, 2, 5)).items()}
    with pytest.raises(Exception):  # C [.., 5] against B [.., 6]
        run_exported(executorch_runtime, lambda *args: torch.ops.edgebit.selective_scan(*args), *inputs.values())
    codes = torch.full((3, 16), 0x88, dtype=torch.uint8)
    with pytest.raises(Exception):  # w_scale [3] where the 4-bit head has one scale per block: [3, 1]
        run_exported(executorch_runtime, lambda x: torch.ops.edgebit.q4_linear(x, codes, torch.ones(3), 20, 32),
                     torch.ones(2, 20))
    # the same calls with fitting shapes run
    (y,) = run_exported(executorch_runtime, lambda x: torch.ops.edgebit.ternary_linear(x, w, torch.ones(1), 8),
                        torch.ones(2, 8))
    assert tuple(y.shape) == (2, 3)
