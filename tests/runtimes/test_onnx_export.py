"""The ONNX exporter: the portable form in stock ONNX Runtime against transformers (BitNet in both HF layouts,
Bi-Mamba against Mamba2 with W_hat), prefill and decode steps carrying the KV cache / SSM state; the custom form's
edgebit nodes, full checker pass and packed sizes; MatMulNBits' dequantized weights against the checkpoints'
own; byte-identical re-exports; the custom form through edgebit's ORT kernels when they can be built."""

from collections import Counter

import numpy as np

from edgebit.models.step_graph import StepStates, step_graph
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import helper

import edgebit
from edgebit.validate.agreement import compare_logits
from edgebit.runtimes.onnx.export import FORMS, export_onnx
from edgebit.errors import EdgebitError
from hf_checkpoints import TinyShape, transformers_logits, write_packed, write_unpacked
from mamba_helpers import hf_mamba2, w_hat_of, with_w_hat

MAX_SEQ_LEN = 24
pytestmark = pytest.mark.slow  # ONNX exports of tiny models
PREFILL = 9
DECODE = 2
BITNET_SHAPE = TinyShape(vocab=96, hidden=48, intermediate=76, heads=4, kv_heads=2, tied=False)  # K=76: Kq 19


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("onnx")


@pytest.fixture(scope="module")
def checkpoints(work):
    hf = hf_mamba2(seed=11)
    hf.save_pretrained(work / "mamba2")
    return {"bitnet-packed": write_packed(work / "packed", BITNET_SHAPE, "bitlinear", seed=31),
            "bitnet-unpacked": write_unpacked(work / "unpacked", TinyShape(), seed=32),
            "bimamba": work / "mamba2", "_hf_mamba2": hf}


@pytest.fixture(scope="module")
def models(checkpoints):
    return {name: edgebit.load(path) for name, path in checkpoints.items() if not name.startswith("_")}


_exports = {}


def exported(work, models, name, form):
    if (name, form) not in _exports:
        path = work / f"{name}-{form}.onnx"
        export_onnx(models[name], form, MAX_SEQ_LEN, path)
        _exports[name, form] = path
    return _exports[name, form]


def reference_logits(checkpoints, models, name, ids):
    if name == "bimamba":
        with torch.no_grad():
            return with_w_hat(checkpoints["_hf_mamba2"], w_hat_of(models[name]))(torch.from_numpy(ids)).logits.numpy()
    return transformers_logits(checkpoints[name], torch.from_numpy(ids)).numpy()


def run_steps(session, ids, model):
    """Prefill PREFILL tokens from empty state, then one-token decode steps carrying the states as a device runner
    does (edgebit.models.step_graph.StepStates: KV cache rows appended, other states replaced)."""
    inputs = [i.name for i in session.get_inputs()]
    states = StepStates(step_graph(model, MAX_SEQ_LEN))
    logits, start = [], 0
    for stop in (PREFILL, *range(PREFILL + 1, PREFILL + DECODE + 1)):
        feeds = {"tokens": ids[:, start:stop]}
        if "position" in inputs:
            feeds["position"] = np.array([start], np.int64)
        feeds["logit_rows"] = np.arange(stop - start, dtype=np.int64)
        feeds.update(zip([n for n in inputs if n not in feeds], states.inputs(start)))
        out = session.run(None, feeds)
        logits.append(out[0])
        states.update(out[1:], start)
        start = stop
    return np.concatenate(logits, axis=1)


def input_ids(models, name, seed):
    vocab = models[name].config.vocab_size
    return np.random.default_rng(seed).integers(0, vocab, (1, PREFILL + DECODE), dtype=np.int64)


def assert_agrees(name, logits, reference):
    for part in (slice(0, PREFILL), slice(0, PREFILL + DECODE)):  # prefill alone, then with the decode steps
        if name == "bimamba":
            assert np.abs(logits[:, part] - reference[:, part]).max() <= 1e-3
            assert np.array_equal(logits[:, part].argmax(-1), reference[:, part].argmax(-1))
        else:
            result = compare_logits(logits[:, part], reference[:, part])
            assert result.passed, result.describe()


@pytest.mark.parametrize("name", ["bitnet-packed", "bitnet-unpacked", "bimamba"])
def test_portable_form_in_stock_onnxruntime_agrees_with_transformers(work, checkpoints, models, name):
    path = exported(work, models, name, "portable")
    model = onnx.load(str(path))
    assert {n.domain for n in model.graph.node} <= {"", "com.microsoft"}
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()][0] == "tokens"
    ids = input_ids(models, name, seed=1)
    assert_agrees(name, run_steps(session, ids, models[name]), reference_logits(checkpoints, models, name, ids))


def _edgebit_nodes(model: onnx.ModelProto) -> Counter:
    return Counter(n.op_type for n in model.graph.node if n.domain == "edgebit")


@pytest.mark.parametrize("name", ["bitnet-packed", "bimamba"])
def test_custom_form_has_one_node_per_operator_and_passes_the_full_check(work, models, name):
    from edgebit.runtimes.onnx.operators import register_schemas

    path = exported(work, models, name, "custom")
    model = onnx.load(str(path))
    register_schemas()
    onnx.checker.check_model(model, full_check=True)
    layers = models[name].config.num_hidden_layers
    expected = ({"BinaryMatMul": 2 * layers, "SelectiveScan": layers} if name == "bimamba"
                else {"TernaryMatMul": 7 * layers})
    assert _edgebit_nodes(model) == expected
    assert {n.domain for n in model.graph.node} == {"", "edgebit"}
    for node in model.graph.node:
        if node.op_type in ("TernaryMatMul", "BinaryMatMul"):
            assert [a.name for a in node.attribute] == ["in_features"]
    # Packed weights stay packed: 2 bits per ternary weight, 1 per sign; the rest is float32 tensors.
    initializers = {t.name: t for t in model.graph.initializer}
    packed = {f"model.{k}": v for k, v in models[name].state_dict().items() if v.dtype == torch.uint8}
    assert packed and all(list(initializers[k].dims) == list(v.shape) and initializers[k].data_type
                          == onnx.TensorProto.UINT8 for k, v in packed.items())
    assert not any(t.data_type == onnx.TensorProto.INT8 for t in model.graph.initializer)
    floats = sum(v.numel() * 4 for v in models[name].state_dict().values() if v.dtype == torch.float32)
    assert path.stat().st_size < 1.1 * (sum(v.numel() for v in packed.values()) + floats) + 40_000


def test_custom_form_shape_inference_gives_every_output_its_shape(work, models):
    from edgebit.runtimes.onnx.operators import register_schemas

    register_schemas()
    model = onnx.load(str(exported(work, models, "bimamba", "custom")))
    del model.graph.value_info[:]  # infer from the schemas alone
    inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    shapes = {v.name: v.type.tensor_type.shape for v in [*inferred.graph.value_info, *inferred.graph.output]}
    scan = next(n for n in model.graph.node if n.op_type == "SelectiveScan")
    y, state = (shapes[name] for name in scan.output)
    assert [d.dim_value for d in y.dim] == [1, 0, 8, 8] and y.dim[1].dim_param  # T stays symbolic
    assert [d.dim_value for d in state.dim] == [1, 8, 8, 16]


@pytest.mark.parametrize("form", FORMS)
def test_exports_are_byte_identical(work, models, form):
    first = exported(work, models, "bitnet-packed", form)
    again = work / f"again-{form}.onnx"
    export_onnx(models["bitnet-packed"], form, MAX_SEQ_LEN, again)
    assert first.read_bytes() == again.read_bytes()


def _single_node_session(model: onnx.ModelProto, node) -> ort.InferenceSession:
    """One MatMulNBits node of an exported file with its initializers, as a model of its own."""
    initializers = [t for t in model.graph.initializer if t.name in node.input[1:]]
    a = helper.make_tensor_value_info(node.input[0], onnx.TensorProto.FLOAT, [None, None])
    y = helper.make_tensor_value_info(node.output[0], onnx.TensorProto.FLOAT, [None, None])
    graph = helper.make_graph([node], "one", [a], [y], initializers)
    single = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20),
                                                     helper.make_opsetid("com.microsoft", 1)])
    single.ir_version = model.ir_version
    return ort.InferenceSession(single.SerializeToString(), providers=["CPUExecutionProvider"])


def _dequantized_by_ort(model, node) -> np.ndarray:
    """The matrix ONNX Runtime multiplies by, [N, K of the node], read with rows of 127 * identity: in the int8
    path every block then holds a 127 (anchors too), so the products are exact; divided by 127 exactly."""
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    columns, block = attrs["K"], attrs["block_size"]
    probe = 127 * np.eye(columns, dtype=np.float32)
    if attrs.get("accuracy_level", 0) == 4:
        probe.reshape(columns, -1, block)[:, :, -1] = 127
    out = _single_node_session(model, node).run(None, {node.input[0]: probe})[0] / 127
    weights = out.T  # [N, K]
    if attrs.get("accuracy_level", 0) == 4:  # drop the anchor column of each block
        weights = weights.reshape(attrs["N"], -1, block)[:, :, :-1].reshape(attrs["N"], -1)
    return weights


def test_matmul_nbits_weights_equal_the_checkpoints_ternary_weights(work, checkpoints, models):
    """Each MatMulNBits node of the portable BitNet file dequantizes (in ORT) to the HF checkpoint's ternary matrix,
    unpacked by transformers' own code, bit for bit."""
    from safetensors.torch import load_file
    from transformers.integrations.bitnet import unpack_weights

    tensors = load_file(str(checkpoints["bitnet-packed"] / "model.safetensors"))
    model = onnx.load(str(exported(work, models, "bitnet-packed", "portable")))
    nodes = [n for n in model.graph.node if n.op_type == "MatMulNBits"]
    assert len(nodes) == 7 * BITNET_SHAPE.layers
    for node in nodes:
        name = node.input[1].rsplit(".matmul.nbits_weight", 1)[0]  # e.g. model.layers.0.self_attn.q_proj
        hf = unpack_weights(tensors[name + ".weight"], dtype=torch.float32).numpy()
        ours = _dequantized_by_ort(model, node)
        assert np.array_equal(ours[:, :hf.shape[1]], hf), name
        assert not ours[:, hf.shape[1]:].any()  # padding columns are weight 0


def test_matmul_nbits_sign_codes_equal_the_binarized_weights(work, models):
    model = onnx.load(str(exported(work, models, "bimamba", "portable")))
    layers = models["bimamba"].binary_layers()
    nodes = [n for n in model.graph.node if n.op_type == "MatMulNBits"]
    assert len(nodes) == len(layers)
    for node in nodes:
        name = node.input[1].rsplit(".matmul.nbits_weight", 1)[0].removeprefix("model.")
        signs = layers[name].signs().numpy()
        assert np.array_equal(_dequantized_by_ort(model, node)[:, :signs.shape[1]], signs), name


def test_portable_ternary_layer_is_exact(work, models):
    """One layer's portable graph in ORT equals the torch reference op bit for bit on activations of every scale."""
    from edgebit.runtimes.onnx.operators import PortableTernaryLinear
    from edgebit_ops.ternary_matmul import ternary_linear_reference

    layer = models["bitnet-packed"].layers[0].mlp.down_proj
    portable = PortableTernaryLinear(layer).eval()
    x = torch.randn(1, 5, layer.in_features) * torch.tensor([1e-4, 0.1, 1.0, 30.0, 1e3]).reshape(1, 5, 1)
    path = work / "layer.onnx"
    torch.onnx.export(portable, (x,), str(path), dynamo=True, input_names=["x"], verbose=False)
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x.numpy()})[0]
    expected = ternary_linear_reference(x, layer.w_packed, layer.w_scale, layer.in_features).numpy()
    assert np.array_equal(got, expected)


def test_bad_requests_are_user_errors(work, models):
    with pytest.raises(EdgebitError, match="unknown ONNX form"):
        export_onnx(models["bimamba"], "int4", MAX_SEQ_LEN, work / "x.onnx")
    from edgebit.models.bitnet.model import BitNetForCausalLM

    latent = BitNetForCausalLM(models["bitnet-unpacked"].config)
    with pytest.raises(EdgebitError, match="packed model"):
        export_onnx(latent, "custom", MAX_SEQ_LEN, work / "x.onnx")


@pytest.mark.parametrize("name", ["bitnet-packed", "bimamba"])
def test_custom_form_runs_with_edgebit_kernels(work, checkpoints, models, name):
    ort_build = pytest.importorskip("edgebit.runtimes.onnx.build")
    from edgebit.targets import resolve_target

    try:
        library = ort_build.build_ops_library(resolve_target("x86_64"))
    except EdgebitError as error:
        pytest.skip(f"edgebit's ORT kernel library cannot be built here: {error}")
    options = ort.SessionOptions()
    options.register_custom_ops_library(str(library))
    session = ort.InferenceSession(str(exported(work, models, name, "custom")), options,
                                   providers=["CPUExecutionProvider"])
    ids = input_ids(models, name, seed=2)
    assert_agrees(name, run_steps(session, ids, models[name]), reference_logits(checkpoints, models, name, ids))
