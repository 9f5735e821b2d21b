"""Decode-step logits (not only greedy tokens) of the TVM and ExecuTorch runtimes on the host, both families: a
prefill step, then one-token decode steps carrying the KV cache / SSM state, each step's logits against transformers
(BitNetForCausalLM on the checkpoint; Mamba2ForCausalLM carrying the same W_hat for Bi-Mamba) with the BitNet
agreement bound. The ONNX forms get the same check in test_onnx_export.py."""

import ctypes

import numpy as np

from edgebit.models.step_graph import StepStates, logit_rows
import pytest
import torch

import edgebit
from edgebit.targets import resolve_target
from edgebit.validate.agreement import compare_logits
from hf_checkpoints import TinyShape, transformers_logits, write_packed
from mamba_helpers import SHAPES, random_bimamba, transformers_twin

pytestmark = pytest.mark.slow  # compiles (TVM) and lowers (ExecuTorch) four models

MAX_SEQ_LEN = 24
PREFILL = 7
DECODE = 4
BITNET_SHAPE = TinyShape(vocab=96, hidden=48, intermediate=76, heads=4, kv_heads=2, tied=False)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("decode")


@pytest.fixture(scope="module")
def families(work):
    """name -> (packed edgebit model, token ids [1, PREFILL + DECODE], transformers logits for them)."""
    checkpoint = write_packed(work / "bitnet", BITNET_SHAPE, "bitlinear", seed=51)
    bitnet = edgebit.load(checkpoint)
    ids = np.random.default_rng(8).integers(0, BITNET_SHAPE.vocab, (1, PREFILL + DECODE), dtype=np.int64)
    bitnet_reference = transformers_logits(checkpoint, torch.from_numpy(ids)).numpy()

    bimamba = random_bimamba(SHAPES["groups2"], seed=9).pack()
    twin = transformers_twin(bimamba)  # its projections quantize as the packed layers do
    mamba_ids = np.random.default_rng(9).integers(0, bimamba.config.vocab_size, (1, PREFILL + DECODE),
                                                  dtype=np.int64)
    with torch.no_grad():
        mamba_reference = twin(torch.from_numpy(mamba_ids)).logits.numpy()
    return {"bitnet": (bitnet, ids, bitnet_reference), "bimamba": (bimamba, mamba_ids, mamba_reference)}


def step_bounds():
    """(start, stop) of the prefill step, then of each one-token decode step."""
    return [(0, PREFILL), *((t, t + 1) for t in range(PREFILL, PREFILL + DECODE))]


def tvm_steps(model, work, name):
    import tvm

    from edgebit.runtimes.tvm.backend import compile_model, load_for_host

    out = work / f"tvm-{name}"
    out.mkdir()
    compiled = compile_model(model, resolve_target("x86_64"), MAX_SEQ_LEN, out)
    step = load_for_host(compiled.library, compiled.weights, compiled.takes_position)
    states = StepStates(compiled.graph, tvm.runtime.tensor)  # as the device runner keeps them

    def run(ids, position):
        logits, *new_states = step(ids, position, *states.inputs(position))
        states.update(new_states, position)
        return logits.numpy()

    return run


def executorch_steps(model, work, name):
    from executorch.extension.pybindings import portable_lib

    from edgebit.runtimes.executorch import backend, build

    library = build.build(resolve_target("x86_64")) / "lib" / build.KERNEL_LIBRARY
    ctypes.CDLL(str(library), mode=ctypes.RTLD_GLOBAL)  # edgebit's kernels in ExecuTorch's operator registry
    program, graph = backend.export_program(model, MAX_SEQ_LEN)
    module = portable_lib._load_for_executorch_from_buffer(program)
    states = [torch.zeros(shape) for shape in graph.state_shapes]

    def run(ids, position, program=program):  # the module reads the program's buffer: keep it alive
        nonlocal states
        position_input = [torch.tensor([position], dtype=torch.long)] if graph.takes_position else []
        position_input += [logit_rows(ids.shape[1])] if graph.takes_logit_rows else []
        logits, *states = module.forward((torch.from_numpy(ids).contiguous(), *position_input, *states))
        states = [s.clone() for s in states]  # outputs may alias the program's planned memory
        return logits.numpy().copy()

    return run


RUNTIMES = {"tvm": tvm_steps, "executorch": executorch_steps}


@pytest.mark.parametrize("family", ["bitnet", "bimamba"])
@pytest.mark.parametrize("runtime", sorted(RUNTIMES))
def test_each_decode_step_agrees_with_transformers(work, families, runtime, family):
    model, ids, reference = families[family]
    run = RUNTIMES[runtime](model, work, family)
    for start, stop in step_bounds():
        logits = run(np.ascontiguousarray(ids[:, start:stop]), start)
        assert logits.shape == (1, stop - start, reference.shape[-1])
        result = compare_logits(logits, reference[:, start:stop])
        assert result.passed, f"{runtime} {family} tokens {start}:{stop}: {result.describe()}"
        if family == "bimamba":  # float all the way (no int8 activations): tighter, as test_onnx_export has it
            assert np.abs(logits - reference[:, start:stop]).max() <= 1e-3
