"""ONNX Runtime's native side: the ``edgebit`` custom-op library (TernaryMatMul, BinaryMatMul, SelectiveScan) run by
real onnxruntime on single-node graphs against the numpy reference of each SPEC.md (ops/<op>/numpy_reference.py),
and the library + C++ runner cross-built for arm64 running a small step model on the host and under qemu-user."""

import json

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgebit.devices import open_device
from edgebit.runtimes.onnx import build as ort_build
from edgebit.targets import resolve_target
from edgebit.toolchain.c_runtime import install_c_runtime, runner_command
from edgebit_ops.binary_matmul import numpy_reference as binary_reference
from edgebit_ops.selective_scan import numpy_reference as scan_reference
from edgebit_ops.ternary_matmul import numpy_reference as ternary_reference

F32, U8, I64 = TensorProto.FLOAT, TensorProto.UINT8, TensorProto.INT64
HOST = resolve_target("x86_64")
pytestmark = pytest.mark.slow  # builds the custom-op library and runners, exports models


@pytest.fixture(scope="module")
def library():
    return str(ort_build.build_ops_library(HOST))


# ---- single-node graphs ----
def model_bytes(nodes, inputs, outputs, initializers=()):
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    model = helper.make_model(graph, ir_version=10, opset_imports=[helper.make_opsetid("", 17),
                                                                     helper.make_opsetid("edgebit", 1)])
    return model.SerializeToString()


def session(data, library, threads=2):
    options = ort.SessionOptions()
    options.register_custom_ops_library(library)
    options.intra_op_num_threads = threads
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def tensor(name, dtype):
    return helper.make_tensor_value_info(name, dtype, None)


def ternary_session(library, k, n, kq):
    node = helper.make_node("TernaryMatMul", ["x", "w", "s"], ["y"], domain="edgebit", in_features=k)
    return session(model_bytes([node], [tensor("x", F32), tensor("w", U8), tensor("s", F32)], [tensor("y", F32)]),
                   library)


@pytest.mark.parametrize("k,kq,n", [(37, 10, 5), (70, 20, 150), (2560 + 6, 642, 67)])
def test_ternary_matches_the_spec(library, k, kq, n):
    """K not a multiple of 4 nor of the vector width, padded rows (Kq > ceil(K/4)), leading dims, row blocks."""
    rng = np.random.default_rng(k)
    w = rng.integers(-1, 2, (n, k))
    x = (rng.standard_normal((2, 3, k)) * rng.uniform(0.1, 30, (2, 3, 1))).astype(np.float32)
    w_packed = ternary_reference.pack_planar(w, kq, rng)  # random codes in the padding columns
    y = ternary_session(library, k, n, kq).run(None, {"x": x, "w": w_packed,
                                                       "s": np.array([0.37], np.float32)})[0]
    reference = ternary_reference.ternary_linear(x, w, np.float32(0.37))
    assert y.shape == (2, 3, n) and y.dtype == np.float32
    assert np.abs(y - reference).max() <= 1e-6 * np.abs(reference).max()


def test_ternary_rounds_half_to_even_and_handles_zero_tokens(library):
    """absmax 127 makes s exactly 1, so x * s hits the .5 ties; an identity W reads the codes back."""
    values = np.array([127, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 3.5, -126.5, 4.4999], np.float32)
    k = n = len(values)
    x = np.stack([values, np.zeros(k, np.float32)])
    identity = ternary_reference.pack_planar(np.eye(k, dtype=int), 3, np.random.default_rng(0))
    y = ternary_session(library, k, n, 3).run(None, {"x": x, "w": identity,
                                                      "s": np.array([1.0], np.float32)})[0]
    np.testing.assert_array_equal(y[0], [127, 0, 2, 2, 0, -2, -2, 4, -126, 4])
    np.testing.assert_array_equal(y[1], np.zeros(k))


@pytest.mark.parametrize("k,kq,n", [(75, 10, 9), (300, 40, 130)])
def test_binary_matches_the_spec(library, k, kq, n):
    rng = np.random.default_rng(k)
    signs = rng.choice([-1, 1], (n, k))
    alpha = rng.uniform(0.01, 0.2, (1, k)).astype(np.float32)
    beta = rng.normal(0, 0.05, (1, k)).astype(np.float32)
    x = rng.standard_normal((1, 4, k)).astype(np.float32)
    node = helper.make_node("BinaryMatMul", ["x", "w", "a", "b"], ["y"], domain="edgebit", in_features=k)
    data = model_bytes([node], [tensor(v, t) for v, t in zip("xwab", (F32, U8, F32, F32))], [tensor("y", F32)])
    w_signs = binary_reference.pack_signs(signs, kq)
    y = session(data, library).run(None, {"x": x, "w": w_signs, "a": alpha, "b": beta})[0]
    reference = binary_reference.binary_linear_int8(x, signs, alpha, beta, kq)
    assert y.shape == (1, 4, n)
    assert np.abs(y - reference).max() <= 1e-5 * np.abs(reference).max()


@pytest.mark.parametrize("length,size", [(1, 16), (7, 5)])
def test_scan_matches_the_recurrence(library, length, size):
    """Decode (T=1) and prefill (T=7) from a nonzero state, two groups of two heads."""
    rng = np.random.default_rng(length)
    batch, heads, dim, groups = 2, 4, 3, 2
    inputs = {"x": rng.standard_normal((batch, length, heads, dim)), "dt": rng.uniform(0.01, 0.5, (batch, length, heads)),
              "A": -rng.uniform(0.5, 2.0, heads), "B": rng.standard_normal((batch, length, groups, size)),
              "C": rng.standard_normal((batch, length, groups, size)), "D": rng.standard_normal(heads),
              "state": rng.standard_normal((batch, heads, dim, size))}
    inputs = {name: value.astype(np.float32) for name, value in inputs.items()}
    node = helper.make_node("SelectiveScan", list(inputs), ["y", "final"], domain="edgebit")
    data = model_bytes([node], [tensor(name, F32) for name in inputs], [tensor("y", F32), tensor("final", F32)])
    y, final = session(data, library).run(None, inputs)
    y_ref, final_ref = scan_reference.selective_scan(*inputs.values())
    np.testing.assert_allclose(y, y_ref, rtol=0, atol=1e-5 * np.abs(y_ref).max())
    np.testing.assert_allclose(final, final_ref, rtol=0, atol=1e-5 * np.abs(final_ref).max())


def test_shape_errors_are_reported_by_onnxruntime(library):
    with pytest.raises(Exception, match="TernaryMatMul: x \\[2, 9\\] must end in in_features = 8"):
        ternary_session(library, 8, 4, 2).run(None, {"x": np.ones((2, 9), np.float32),
                                                      "w": np.zeros((4, 2), np.uint8), "s": np.ones(1, np.float32)})


# ---- a step model through the C++ runner: host and emulated arm64 ----
V, KE, H, P, G, N = 40, 30, 4, 6, 2, 8  # vocab, embedding width (K of the ternary layer), scan sizes


def step_model(rng):
    """tokens [1,T] (+ ssm_state) -> ternary(embedding) -> scan -> binary head -> logits [1,T,V] (+ state)."""
    k = H * P
    weights = {"E": rng.standard_normal((V, KE)).astype(np.float32),
               "Wt": rng.integers(-1, 2, (k, KE)), "Edt": rng.normal(-1, 1, (V, H)).astype(np.float32),
               "EB": rng.standard_normal((V, G * N)).astype(np.float32),
               "EC": rng.standard_normal((V, G * N)).astype(np.float32),
               "A": -rng.uniform(0.5, 2, H).astype(np.float32), "D": rng.standard_normal(H).astype(np.float32),
               "S": rng.choice([-1, 1], (V, k)), "alpha": rng.uniform(0.05, 0.3, (1, k)).astype(np.float32),
               "beta": rng.normal(0, 0.05, (1, k)).astype(np.float32)}
    init = {"E": weights["E"], "Wt": ternary_reference.pack_planar(weights["Wt"], 8, rng),
            "scale": np.array([0.5], np.float32),
            "Edt": weights["Edt"], "EB": weights["EB"], "EC": weights["EC"], "A": weights["A"], "D": weights["D"],
            "S": binary_reference.pack_signs(weights["S"], 3), "alpha": weights["alpha"], "beta": weights["beta"],
            "shape_x": np.array([1, -1, H, P], np.int64), "shape_g": np.array([1, -1, G, N], np.int64),
            "shape_y": np.array([1, -1, H * P], np.int64)}
    nodes = [helper.make_node("Gather", ["E", "tokens"], ["emb"]),
             helper.make_node("TernaryMatMul", ["emb", "Wt", "scale"], ["u"], domain="edgebit", in_features=KE),
             helper.make_node("Reshape", ["u", "shape_x"], ["xs"]),
             helper.make_node("Gather", ["Edt", "tokens"], ["dt_raw"]),
             helper.make_node("Softplus", ["dt_raw"], ["dt"]),
             helper.make_node("Gather", ["EB", "tokens"], ["b_flat"]),
             helper.make_node("Reshape", ["b_flat", "shape_g"], ["B"]),
             helper.make_node("Gather", ["EC", "tokens"], ["c_flat"]),
             helper.make_node("Reshape", ["c_flat", "shape_g"], ["C"]),
             helper.make_node("SelectiveScan", ["xs", "dt", "A", "B", "C", "D", "ssm_state"], ["y", "ssm_state_out"],
                              domain="edgebit"),
             helper.make_node("Reshape", ["y", "shape_y"], ["y2"]),
             helper.make_node("BinaryMatMul", ["y2", "S", "alpha", "beta"], ["logits"], domain="edgebit",
                              in_features=H * P)]
    data = model_bytes(nodes, [helper.make_tensor_value_info("tokens", I64, [1, "T"]),
                               helper.make_tensor_value_info("ssm_state", F32, [1, H, P, N])],
                       [helper.make_tensor_value_info("logits", F32, [1, "T", V]),
                        helper.make_tensor_value_info("ssm_state_out", F32, [1, H, P, N])],
                       [numpy_helper.from_array(value, name) for name, value in init.items()])
    return data, weights


def step_reference(weights, ids):
    """Logits [T, V] of one sequence from a zero state, in float64 (quantization in float32 as in SPEC.md)."""
    u = ternary_reference.ternary_linear(weights["E"][ids], weights["Wt"], np.float32(0.5))
    dt = np.log1p(np.exp(weights["Edt"][ids].astype(np.float64)))
    b, c = (weights[name][ids].reshape(1, len(ids), G, N) for name in ("EB", "EC"))
    y, _ = scan_reference.selective_scan(u.reshape(1, len(ids), H, P), dt[None], weights["A"], b, c, weights["D"],
                          np.zeros((1, H, P, N)))
    return binary_reference.binary_linear_int8(y.reshape(len(ids), H * P), weights["S"], weights["alpha"],
                                               weights["beta"], 3)


@pytest.fixture(scope="module")
def step_runtime(tmp_path_factory):
    work = tmp_path_factory.mktemp("ort_step")
    data, weights = step_model(np.random.default_rng(11))
    (work / "model.onnx").write_bytes(data)
    (work / "model.conf").write_text(f"inputs tokens\nmax_seq_len 32\nvocab_size {V}\nstate 1 {H} {P} {N}\n")
    return work, weights


def runtime_dir(work, target):
    """runtimes/<rt>/ as a bundle lays it out: model, conf, bin/edgebit-runner, lib/ (ORT + our ops)."""
    directory = work / f"rt-{target.name}"
    (directory / "bin").mkdir(parents=True, exist_ok=True)
    (directory / "lib").mkdir(exist_ok=True)
    for name in ("model.onnx", "model.conf"):
        (directory / name).write_bytes((work / name).read_bytes())
    for source, name in ((ort_build.build_runner(target), "bin/edgebit-runner"),
                         (ort_build.ort_library(target), f"lib/{ort_build.ORT_SONAME}"),
                         (ort_build.build_ops_library(target), f"lib/{ort_build.OPS_LIBRARY}")):
        (directory / name).write_bytes(source.read_bytes())
        (directory / name).chmod(0o755)
    return directory


@pytest.mark.parametrize("target_name,device", [("x86_64", "local"), ("arm64-dotprod", "qemu")])  # sdot path
def test_runner_runs_the_custom_ops_on_the_device(step_runtime, target_name, device, tmp_path):
    work, weights = step_runtime
    target = resolve_target(target_name)
    ids = np.random.default_rng(4).integers(0, V, (2, 9), dtype=np.int64)
    np.save(tmp_path / "ids.npy", ids)
    with open_device(device, target.name) as dev:
        local = runtime_dir(work, target)
        install_c_runtime(target, local)  # runners start through their own loader, as in a bundle
        root = dev.push(local)
        ids_path = dev.push(tmp_path / "ids.npy")
        runner = runner_command(target, root)
        env = {"EDGEBIT_NUM_THREADS": "2"}
        result = dev.run([*runner, root, "logits", ids_path, f"{root}/logits.npy"], timeout=300, env=env)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout.strip().splitlines()[-1])["prefill_tokens"] == 18
        dev.pull(f"{root}/logits.npy", tmp_path / "logits.npy")
        logits = np.load(tmp_path / "logits.npy")
        reference = np.stack([step_reference(weights, row) for row in ids])
        assert np.abs(logits - reference).max() <= 1e-4 * np.abs(reference).max()
        # greedy decoding: one prefill, then one-token steps that carry the SSM state (generate takes one prompt)
        np.save(tmp_path / "prompt.npy", ids[:1])
        prompt_path = dev.push(tmp_path / "prompt.npy")
        result = dev.run([*runner, root, "generate", prompt_path, "6", f"{root}/gen.npy"], timeout=300, env=env)
        assert result.returncode == 0, result.stderr
        dev.pull(f"{root}/gen.npy", tmp_path / "gen.npy")
    sequence = list(ids[0])
    for _ in range(6):
        sequence.append(int(step_reference(weights, np.array(sequence))[-1].argmax()))
    assert np.load(tmp_path / "gen.npy").tolist() == [sequence[9:]]


# ---- exported models end to end: edgebit export's ONNX forms, through the runner, against transformers ----
E2E_DEVICES = {"x86_64": "local", "arm64": "qemu"}


@pytest.fixture(scope="module")
def e2e(tmp_path_factory):
    """A tiny packed BitNet (HF bitlinear layout) and a Bi-Mamba binarized from a transformers Mamba-2, each with
    transformers' logits for the same ids (for Bi-Mamba: the twin whose in/out_proj weights are our W_hat)."""
    import torch

    import edgebit
    from edgebit.checkpoints.edgebit_format import save_checkpoint
    from hf_checkpoints import TinyShape, transformers_logits, write_packed
    from mamba_helpers import binarized_twin, hf_mamba2

    work = tmp_path_factory.mktemp("ort_e2e")
    shape = TinyShape(vocab=96, hidden=48, intermediate=76, heads=4, kv_heads=2, tied=False)  # Kq 12 and 19
    bitnet_dir = write_packed(work / "bitnet", shape, "bitlinear", seed=21)
    bitnet_ids = np.random.default_rng(5).integers(0, 96, (2, 13), dtype=np.int64)
    hf = hf_mamba2(seed=7)
    hf.save_pretrained(work / "mamba2")
    save_checkpoint(edgebit.load(work / "mamba2"), work / "bi")
    bimamba = edgebit.load(work / "bi")
    twin = binarized_twin(hf, bimamba)
    bimamba_ids = np.random.default_rng(3).integers(0, 64, (2, 11), dtype=np.int64)
    with torch.no_grad():
        bimamba_reference = twin(torch.from_numpy(bimamba_ids)).logits.numpy()
    return work, {"bitnet": (edgebit.load(bitnet_dir), bitnet_ids,
                             transformers_logits(bitnet_dir, torch.from_numpy(bitnet_ids)).numpy()),
                  "bimamba": (bimamba, bimamba_ids, bimamba_reference)}


_runtimes = {}


def runtime_for(e2e, family, runtime, target):
    """runtimes/<runtime>/ of a bundle, laid out from the runtime's build() file map (built once)."""
    from edgebit.runtimes import runtime as runtime_named

    key = (family, runtime, target.name)
    if key not in _runtimes:
        work, models = e2e
        files = runtime_named(runtime).build(models[family][0], target, 64, work / "-".join(key))
        assert ("lib/libedgebit_ort_ops.so" in files) == (runtime == "onnx-custom")
        directory = work / ("rt-" + "-".join(key))
        for relative, source in files.items():
            (directory / relative).parent.mkdir(parents=True, exist_ok=True)
            (directory / relative).write_bytes(source.read_bytes())
            (directory / relative).chmod(0o755)
        install_c_runtime(target, directory)  # runners start through their own loader, as in a bundle
        _runtimes[key] = (directory, target)
    return _runtimes[key]


def run_runner(device, runtime, *args, inputs=()):
    """Run the bundle runner of ``runtime`` (a runtime_for result) on ``device``; ``inputs`` are host files whose
    device paths replace {0}, {1}..."""
    directory, target = runtime
    root = device.push(directory)
    pushed = [device.push(path) for path in inputs]
    argv = [*runner_command(target, root), root, *(a.format(*pushed, root=root) for a in args)]
    result = device.run(argv, timeout=300)
    assert result.returncode == 0, result.stderr
    return root


@pytest.mark.parametrize("runtime", ["onnx-custom", "onnx-portable"])
@pytest.mark.parametrize("family", ["bitnet", "bimamba"])
@pytest.mark.parametrize("target_name", list(E2E_DEVICES))
def test_exported_model_on_the_device_agrees_with_transformers(e2e, family, runtime, target_name):
    from edgebit.validate.agreement import compare_logits

    work, models = e2e
    _, ids, reference = models[family]
    target = resolve_target(target_name)
    np.save(work / f"ids-{family}.npy", ids)
    with open_device(E2E_DEVICES[target_name], target.name) as dev:
        root = run_runner(dev, runtime_for(e2e, family, runtime, target), "logits", "{0}", "{root}/out.npy",
                          inputs=[work / f"ids-{family}.npy"])
        dev.pull(f"{root}/out.npy", work / "out.npy")
    logits = np.load(work / "out.npy")
    if family == "bitnet":
        agreement = compare_logits(logits, reference)
        assert agreement.passed, agreement.describe()
    else:
        assert np.abs(logits - reference).max() <= 1e-3
        assert np.array_equal(logits.argmax(-1), reference.argmax(-1))


@pytest.mark.parametrize("runtime", ["onnx-custom", "onnx-portable"])
@pytest.mark.parametrize("family", ["bitnet", "bimamba"])
def test_runner_greedy_decoding_matches_host(e2e, family, runtime, tmp_path):
    """Prefill, then one-token steps carrying the KV cache / conv + SSM state, continue a prompt as PyTorch does."""
    from edgebit.generate import Sampling, generate_ids

    prompt = [3, 17, 42, 5, 9]
    np.save(tmp_path / "prompt.npy", np.array([prompt], dtype=np.int64))
    with open_device("local") as dev:
        root = run_runner(dev, runtime_for(e2e, family, runtime, HOST), "generate", "{0}", "10", "{root}/gen.npy",
                          inputs=[tmp_path / "prompt.npy"])
        dev.pull(f"{root}/gen.npy", tmp_path / "gen.npy")
    assert np.load(tmp_path / "gen.npy").tolist() == [generate_ids(e2e[1][family][0], prompt,
                                                                   Sampling(10, 0.0, 0, 0))]
