"""The ExecuTorch runtime end to end with real parts: .pte export (XNNPACK + edgebit's out-variant custom ops), the
C++ kernels against numpy float64 implementations of each SPEC.md, logits of tiny BitNet (both HF layouts) and
Bi-Mamba checkpoints against transformers, run in Python (ExecuTorch's pybindings with our kernel library loaded)
and through the C++ runner on the host and on emulated arm64, greedy decoding with carried state, determinism."""

import ctypes
import shutil

import numpy as np
import pytest
import torch

import edgebit
from edgebit.models.step_graph import logit_rows
from edgebit.validate.agreement import compare_logits
from edgebit.runtimes.executorch import backend as executorch_backend
from edgebit.devices import open_device
from edgebit.generate import Sampling, generate_ids
from edgebit.quant.packing import pack_planar
from edgebit.runtimes.executorch import build as executorch_build
from edgebit.targets import resolve_target
from edgebit.toolchain.c_runtime import install_c_runtime, runner_command
from edgebit_ops.binary_matmul import numpy_reference as binary_reference
from edgebit_ops.selective_scan import numpy_reference as scan_reference
from edgebit_ops.ternary_matmul import numpy_reference as ternary_reference
from hf_checkpoints import TinyShape, transformers_logits, write_packed, write_unpacked
from mamba_helpers import SHAPES, random_bimamba, transformers_twin

MAX_SEQ_LEN = 32
DEVICES = {"x86_64": "local", "arm64": "qemu"}
pytestmark = pytest.mark.slow  # builds the kernel library, exports programs
# Untied head (XNNPACK), Kq 32 and 50 for the kernels; the unpacked checkpoint has a tied head (aten::linear.out).
PACKED_SHAPE = TinyShape(vocab=96, hidden=128, intermediate=200, heads=4, kv_heads=2, tied=False)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("executorch")


@pytest.fixture(scope="module")
def runtime():
    """ExecuTorch's Python runtime with edgebit's host kernel library registered in the same operator registry."""
    from executorch.extension.pybindings import portable_lib

    library = executorch_build.build(resolve_target("x86_64")) / "lib" / executorch_build.KERNEL_LIBRARY
    ctypes.CDLL(str(library), mode=ctypes.RTLD_GLOBAL)
    return portable_lib


def run_program(runtime, program: bytes, *inputs):
    module = runtime._load_for_executorch_from_buffer(program)
    return [t.numpy() for t in module.forward(tuple(t.contiguous() for t in inputs))]


# ---- each kernel against the numpy reference of its SPEC.md (ops/<op>/numpy_reference.py) ----

def export_op(fn, example, dynamic_shapes=None) -> bytes:
    from executorch.exir import to_edge

    class Op(torch.nn.Module):
        def forward(self, *args):
            return fn(*args)

    shapes = None if dynamic_shapes is None else (tuple(dynamic_shapes),)  # forward(*args): one tuple argument
    exported = torch.export.export(Op(), example, dynamic_shapes=shapes)
    return to_edge(exported).to_executorch().buffer


def test_ternary_kernel_matches_spec(runtime):
    rng = np.random.default_rng(0)
    n, k, kq = 37, 45, 14  # K not a multiple of 4, Kq beyond ceil(K/4): padding columns
    ternary = rng.integers(-1, 2, (n, k))
    w_packed = pack_planar(torch.from_numpy(ternary), kq)
    w_scale = torch.tensor([0.37])
    x = rng.normal(size=(2, 5, k)).astype(np.float32)
    x[0, 0, :6] = [127.0, 2.5, -3.5, 0.5, -0.5, 1.5]  # absmax 127: s = 1, exact ties round to even
    tokens = torch.export.Dim("tokens", min=1, max=8)
    program = export_op(lambda v: torch.ops.edgebit.ternary_linear(v, w_packed, w_scale, k), (torch.from_numpy(x),),
                        ({1: tokens},))
    for length in (5, 1):
        (out,) = run_program(runtime, program, torch.from_numpy(x[:, :length]))
        expected = ternary_reference.ternary_linear(x[:, :length], ternary, 0.37)
        assert out.shape == (2, length, n)
        np.testing.assert_allclose(out, expected, rtol=2e-6, atol=1e-6)


def test_binary_kernel_matches_spec(runtime):
    rng = np.random.default_rng(1)
    n, k = 29, 53
    signs = rng.choice([-1, 1], (n, k))
    alpha = rng.uniform(0.02, 0.1, (1, k)).astype(np.float32)
    beta = rng.normal(0, 0.02, (1, k)).astype(np.float32)
    x = rng.normal(size=(1, 6, k)).astype(np.float32)
    packed = torch.from_numpy(binary_reference.pack_signs(signs))
    program = export_op(lambda v: torch.ops.edgebit.binary_linear(v, packed, torch.from_numpy(alpha),
                                                                   torch.from_numpy(beta), k), (torch.from_numpy(x),))
    (out,) = run_program(runtime, program, torch.from_numpy(x))
    np.testing.assert_allclose(out, binary_reference.binary_linear_int8(x, signs, alpha, beta), rtol=1e-5,
                               atol=1e-6)


def test_selective_scan_kernel_matches_spec(runtime):
    rng = np.random.default_rng(2)
    batch, length, heads, dim, groups, size = 2, 7, 6, 5, 2, 9
    f = np.float32
    args = [rng.normal(size=(batch, length, heads, dim)).astype(f),
            rng.uniform(0.01, 0.5, (batch, length, heads)).astype(f),
            -rng.uniform(0.5, 2, heads).astype(f), rng.normal(size=(batch, length, groups, size)).astype(f),
            rng.normal(size=(batch, length, groups, size)).astype(f), rng.normal(1, 0.2, heads).astype(f),
            rng.normal(size=(batch, heads, dim, size)).astype(f)]
    tokens = torch.export.Dim("tokens", min=1, max=8)
    program = export_op(torch.ops.edgebit.selective_scan, tuple(map(torch.from_numpy, args)),
                        ({1: tokens}, {1: tokens}, None, {1: tokens}, {1: tokens}, None, None))
    for length in (7, 1):
        step = [a[:, :length] if i in (0, 1, 3, 4) else a for i, a in enumerate(args)]
        y, final = run_program(runtime, program, *map(torch.from_numpy, step))
        y_ref, final_ref = scan_reference.selective_scan(*step)
        np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(final, final_ref, rtol=1e-5, atol=1e-5)


# ---- whole models ----

class Exported:
    """A model, its .pte and its runtime directories per target (the .pte is the same for every target)."""

    def __init__(self, work, name, model):
        self.work, self.name, self.model = work / name, name, model
        self.work.mkdir()
        self.program, self.graph = executorch_backend.export_program(model, MAX_SEQ_LEN)
        (self.work / "model.pte").write_bytes(self.program)
        (self.work / "model.conf").write_text(self.graph.runner_conf())
        self._dirs = {}

    def runtime_dir(self, target):
        if target not in self._dirs:
            files = executorch_backend.runtime_files(resolve_target(target), self.work / "model.pte",
                                                     self.work / "model.conf")
            root = self.work / f"runtime-{target}"
            for relative, source in files.items():
                (root / relative).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, root / relative)
            install_c_runtime(resolve_target(target), root)  # runners start through their own loader
            self._dirs[target] = root
        return self._dirs[target]

    def run(self, target, *command, threads=1):
        """Run the runner on the target's device: ``logits IDS`` -> logits, ``generate IDS N`` -> token ids."""
        with open_device(DEVICES[target], target) as device:
            root = device.push(self.runtime_dir(target))
            arguments = [device.push(a) if hasattr(a, "is_file") else str(a) for a in command]
            result = device.run([*runner_command(resolve_target(target), root), root, *arguments, f"{root}/out.npy"],
                                timeout=300, env={"EDGEBIT_NUM_THREADS": str(threads)})
            assert result.returncode == 0, result.stderr[-2000:]
            local = self.work / f"out-{target}.npy"
            device.pull(f"{root}/out.npy", local)
            self.last_stdout = result.stdout
            return np.load(local)


@pytest.fixture(scope="module")
def bitnet(work):
    packed = write_packed(work / "packed", PACKED_SHAPE, "bitlinear", seed=31)
    unpacked = write_unpacked(work / "unpacked", TinyShape(layers=1), seed=32)
    return {"packed": (packed, Exported(work, "bitnet-packed", edgebit.load(packed))),
            "unpacked": (unpacked, Exported(work, "bitnet-unpacked", edgebit.load(unpacked)))}


@pytest.fixture(scope="module")
def bimamba(work):
    model = random_bimamba(SHAPES["groups2"], seed=5).pack()
    twin = transformers_twin(model)  # its projections quantize as the packed layers do
    return twin, Exported(work, "bimamba", model)


def ids_file(work, vocab, shape, seed):
    ids = np.random.default_rng(seed).integers(0, vocab, shape, dtype=np.int64)
    path = work / f"ids-{vocab}-{seed}.npy"
    np.save(path, ids)
    return ids, path


def python_logits(runtime, exported, ids):
    """Prefill in ExecuTorch's Python runtime, one row at a time from empty states."""
    rows = []
    for row in ids:
        states = [torch.zeros(shape) for shape in exported.graph.state_shapes]
        position = [torch.zeros(1, dtype=torch.long)] if exported.graph.takes_position else []
        position += [logit_rows(len(row))] if exported.graph.takes_logit_rows else []
        rows.append(run_program(runtime, exported.program, torch.from_numpy(row[None]), *position, *states)[0][0])
    return np.stack(rows)


@pytest.mark.parametrize("layout", ["packed", "unpacked"])
def test_bitnet_python_runtime_agrees_with_transformers(runtime, work, bitnet, layout):
    checkpoint, exported = bitnet[layout]
    vocab = exported.model.config.vocab_size
    ids, _ = ids_file(work, vocab, (2, 11), 1)
    reference = transformers_logits(checkpoint, torch.from_numpy(ids)).numpy()
    result = compare_logits(python_logits(runtime, exported, ids), reference)
    assert result.passed, result.describe()


@pytest.mark.qemu  # the arm64 cases
@pytest.mark.parametrize("layout,target", [("packed", "x86_64"), ("packed", "arm64"), ("unpacked", "arm64")])
def test_bitnet_runner_agrees_with_transformers(work, bitnet, layout, target):
    checkpoint, exported = bitnet[layout]
    ids, path = ids_file(work, exported.model.config.vocab_size, (2, 13), 2)
    reference = transformers_logits(checkpoint, torch.from_numpy(ids)).numpy()
    result = compare_logits(exported.run(target, "logits", path), reference)
    assert result.passed, result.describe()


@pytest.mark.qemu  # the arm64 case
@pytest.mark.parametrize("target", list(DEVICES))
def test_bitnet_runner_greedy_decoding_carries_the_cache(work, bitnet, target):
    _, exported = bitnet["packed"]
    prompt = [3, 17, 42, 8, 65]
    np.save(work / "prompt.npy", np.array([prompt], dtype=np.int64))
    host = generate_ids(exported.model, prompt, Sampling(16, 0.0, 0, 0))
    tokens = exported.run(target, "generate", work / "prompt.npy", 16, threads=2)
    assert tokens.tolist() == [host]


@pytest.mark.qemu
def test_bimamba_agrees_with_transformers_in_python_and_the_runners(runtime, work, bimamba):
    twin, exported = bimamba
    ids, path = ids_file(work, exported.model.config.vocab_size, (2, 11), 3)
    with torch.no_grad():
        reference = twin(torch.from_numpy(ids)).logits.numpy()
    for logits in (python_logits(runtime, exported, ids), exported.run("x86_64", "logits", path),
                   exported.run("arm64", "logits", path)):
        assert np.abs(logits - reference).max() <= 1e-3
        assert np.array_equal(logits.argmax(-1), reference.argmax(-1))


@pytest.mark.qemu  # the arm64 case
@pytest.mark.parametrize("target", list(DEVICES))
def test_bimamba_runner_greedy_decoding_carries_the_state(work, bimamba, target):
    _, exported = bimamba
    prompt = [5, 9, 33, 2]
    np.save(work / "mamba-prompt.npy", np.array([prompt], dtype=np.int64))
    host = generate_ids(exported.model, prompt, Sampling(12, 0.0, 0, 0))
    assert exported.run(target, "generate", work / "mamba-prompt.npy", 12).tolist() == [host]


# ---- the program file ----

def operators(program: bytes) -> set[str]:
    """The non-delegated operators a .pte calls (name.overload)."""
    from executorch.exir._serialize._program import deserialize_pte_binary

    parsed = deserialize_pte_binary(program)
    plan = getattr(parsed, "program", parsed).execution_plan[0]
    return {f"{op.name}.{op.overload}" for op in plan.operators}


def test_program_keeps_packed_weights_and_custom_ops(bitnet):
    """2 bits per ternary weight: every layer's packed uint8 planes are stored as they are, next to the float
    tensors and ~100 KB of program and XNNPACK graphs (int8-unpacked weights would add 190 KB more here)."""
    _, exported = bitnet["packed"]
    model = exported.model
    packed = [p for name, p in model.named_buffers() if name.endswith("w_packed")]
    floats = sum(p.numel() * 4 for p in model.parameters())  # embedding, head, norms (float32)
    assert len(exported.program) < floats + sum(p.numel() for p in packed) + 96 * 1024
    assert all(p.numpy().tobytes() in exported.program for p in packed)
    ops = operators(exported.program)
    assert "edgebit::ternary_linear.out" in ops and "aten::linear.out" not in ops  # the untied head: XNNPACK


def test_tied_head_shares_the_embedding_table(bitnet):
    _, exported = bitnet["unpacked"]
    table = exported.model.embed_tokens.weight.detach().numpy().tobytes()
    assert "aten::linear.out" in operators(exported.program) and exported.program.count(table) == 1


def test_export_is_deterministic(bimamba):
    _, exported = bimamba
    again, _ = executorch_backend.export_program(exported.model, MAX_SEQ_LEN)
    assert again == exported.program
    assert {"edgebit::binary_linear.out", "edgebit::selective_scan.out"} <= operators(again)


def test_riscv64_is_refused_with_the_reason():
    executorch = executorch_backend.ExecuTorchRuntime()
    reason = executorch.unsupported_reason(resolve_target("riscv64"), "bitnet")
    assert "riscv64" in reason and "wheel" in reason
    assert executorch.unsupported_reason(resolve_target("arm64"), "bimamba") is None
