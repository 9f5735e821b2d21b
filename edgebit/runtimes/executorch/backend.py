"""The ExecuTorch runtime backend: the step graph (edgebit.models.step_graph) -> torch.export with a symbolic token count
-> ``to_edge_transform_and_lower`` (XNNPACK takes the dense float parts: norms, attention, an untied head) ->
``to_executorch`` -> ``model.pte``, run on the device by a C++ runner over ExecuTorch's Module API.

A family with a step in the convention of ExecuTorch's own LLM runner (``Family.llm_step_graph``) is exported
in that form: ``forward(tokens [1, T], input_pos [1]) -> logits``, the KV caches inside the program as mutable buffers
written in place (``index_put_``, kept in place by ExecuTorch's re-inplacing pass: a step writes its T slots, nothing
is copied in or out), and constant methods with the metadata that runner reads (``get_max_seq_len``,
``get_max_context_len``, ``get_vocab_size``, ``use_kv_cache``, ``enable_dynamic_shape``, ``get_bos_id``,
``get_eos_ids``, ...). ExecuTorch's ``TextLLMRunner`` then generates from the bundle's ``model.pte`` and
``tokenizer.json`` once edgebit's kernel library is loaded into its process; edgebit's runner drives the same
``forward`` (model.conf lists no states). Other families keep the step with explicit state inputs and outputs.

edgebit's operators (``edgebit::ternary_linear``, ``binary_linear``, ``selective_scan``) stay in the program as
out-variant custom ops with their packed uint8 weights as constants, executed by the C++ kernels in
``ops/*/executorch_adapter.cpp``. One ``forward`` method serves prefill (T tokens) and decode (T = 1): its inputs are
read from the caller's buffers; the outputs are memory-planned for the largest T the program allows: the LLM-runner
form takes at most ``TOKENS_PER_STEP`` tokens a call (edgebit.models.step_graph; both runners prefill in such chunks),
the explicit-state form up to max_seq_len.

The float32 output head: with tied embeddings (BitNet 2B-4T, Bi-Mamba) it stays an ``aten.linear`` node run by
ExecuTorch's optimized CPU kernel, so the embedding table is stored once and serves both the lookup and the head.
Given to XNNPACK, the delegate would carry its own copy (measured: 132 MB instead of 67 MB for a 32000 x 512
table) at about twice the head's decode speed. Untied heads have nothing to share and go to XNNPACK.
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import torch

from edgebit.bundle.layout import MODEL_CONF, RUNNER
from edgebit.errors import EdgebitError
from edgebit.models.step_graph import TOKENS_PER_STEP, StepGraph, logit_rows_dim, step_graph, token_dim
from edgebit.runtimes.base import Runtime
from edgebit.runtimes.executorch import build as executorch_build
from edgebit.targets import Target

MODEL_FILE = "model.pte"


LINEAR = torch.ops.aten.linear.default


def _partitioner(tied_head: bool):
    """XNNPACK for the dense float ops; with ``tied_head``, everything but the output head (``aten.linear``).

    The head is kept from decomposing (XNNPACK's own decomposition step would turn it into permute + mm, a run-time
    transpose of the whole table) and from XNNPACK's linear pattern, so it is emitted as ``aten::linear.out``.
    """
    from executorch.backends.xnnpack.partition.config import ALL_PARTITIONER_CONFIGS
    from executorch.backends.xnnpack.partition.config.gemm_configs import LinearConfig
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

    if not tied_head:
        return XnnpackPartitioner()

    class HeadOutsideXnnpack(XnnpackPartitioner):
        def __init__(self):
            super().__init__(configs=[c for c in ALL_PARTITIONER_CONFIGS if c is not LinearConfig])

        def ops_to_not_decompose(self, ep):
            ops, supported = super().ops_to_not_decompose(ep)
            return [*ops, LINEAR], lambda node: node.target == LINEAR or bool(supported and supported(node))

    return HeadOutsideXnnpack()


def _import_quietly() -> None:
    """Import executorch's exporter without the log lines of its dependencies (torchao reports the CUDA-only
    extensions it cannot load on a CPU machine; torch's pytree warns about torchao's enums)."""
    import logging

    loggers = [logging.getLogger(name) for name in ("torchao", "torch.utils._pytree")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        import executorch.exir  # noqa: F401
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def program_step_graph(model: torch.nn.Module, max_seq_len: int) -> StepGraph:
    """The step a .pte carries: the family's LLM-runner form where it has one, else its step with explicit state."""
    from edgebit.models import family_of

    llm_step_graph = family_of(model).llm_step_graph
    if llm_step_graph:
        return llm_step_graph(model, max_seq_len)  # bounds its token count itself (and says so in its metadata)
    # ExecuTorch plans memory for the largest call: at most a runner's prefill chunk, not the whole context
    graph = step_graph(model, max_seq_len)
    shapes = list(graph.dynamic_shapes)  # the tokens' dimension first, as every family's step graph has it
    shapes[0] = {1: token_dim(max_seq_len, TOKENS_PER_STEP)}
    if graph.takes_logit_rows:
        shapes[graph.input_names.index("logit_rows")] = {0: logit_rows_dim(max_seq_len, TOKENS_PER_STEP)}
    return dataclasses.replace(graph, dynamic_shapes=tuple(shapes))


def export_program(model: torch.nn.Module, max_seq_len: int) -> tuple[bytes, StepGraph]:
    """The .pte bytes of ``model``'s step graph (deterministic: the same model gives the same bytes)."""
    graph = program_step_graph(model, max_seq_len)
    tied_head = getattr(model, "lm_head", None) is None
    return _program(graph.module, graph.example, graph.dynamic_shapes, tied_head, graph.metadata), graph


def _program(module: torch.nn.Module, example: tuple, dynamic_shapes, tied_head: bool,
             metadata: dict | None = None) -> bytes:
    """torch.export -> XNNPACK partition -> .pte bytes, with ``metadata`` as constant methods."""
    _import_quietly()
    from executorch.exir import ExecutorchBackendConfig, to_edge_transform_and_lower
    from executorch.exir.passes import MemoryPlanningPass

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # executorch's lowering warns about its own deprecated pytree helpers
        exported = torch.export.export(module, example, dynamic_shapes=dynamic_shapes)
        edge = to_edge_transform_and_lower(exported, partitioner=[_partitioner(tied_head)],
                                           constant_methods=metadata or None)
        # Inputs are not memory-planned: the runtime reads the caller's buffers (tokens, KV caches or SSM states)
        # in place instead of copying them into the arena on every step. Buffers the step mutates (KV caches) live
        # in the planned memory; re-inplacing turns their functional index_put into the in-place kernel, so no
        # write-back copy of a whole cache follows.
        program = edge.to_executorch(ExecutorchBackendConfig(
            memory_planning_pass=MemoryPlanningPass(alloc_graph_input=False),
            run_reinplace_pass=bool(edge.exported_program().graph_signature.buffers_to_mutate)))
    return program.buffer


def runtime_files(target: Target, program: Path, conf: Path) -> dict[str, Path]:
    """The runtime directory's files around an exported ``model.pte`` (which is the same for every target)."""
    built = executorch_build.build(target)
    files = {MODEL_FILE: program, MODEL_CONF: conf, RUNNER: built / RUNNER,
             f"lib/{executorch_build.KERNEL_LIBRARY}": built / "lib" / executorch_build.KERNEL_LIBRARY}
    files.update({f"lib/{path.name}": path for path in executorch_build.runtime_libraries(target)})
    return files


class ExecuTorchRuntime(Runtime):
    """ExecuTorch: a .pte with XNNPACK for the dense parts and edgebit's kernels for its operators."""

    name = "executorch"
    model_file = MODEL_FILE

    def unsupported_reason(self, target: Target, family: str) -> str | None:
        return executorch_build.unsupported_reason(target)

    def version(self) -> str:
        return executorch_build.executorch_version()

    def build(self, model, target: Target, max_seq_len: int, work: Path) -> dict[str, Path]:
        """``runtimes/executorch/`` of a bundle: model.pte, model.conf, bin/edgebit-runner and lib/*.so."""
        reason = self.unsupported_reason(target, model.family)
        if reason:
            raise EdgebitError(f"--runtime executorch for {target.name}: {reason}")
        executorch_build.build(target)  # toolchain problems surface before the (slower) export
        work.mkdir(parents=True, exist_ok=True)
        program, graph = export_program(model, max_seq_len)
        (work / MODEL_FILE).write_bytes(program)
        (work / MODEL_CONF).write_text(graph.runner_conf())
        return runtime_files(target, work / MODEL_FILE, work / MODEL_CONF)

    def operator_runner(self, op: str, target: Target):
        """The layer calling ``op`` exported to a .pte as bundles are, run by ExecuTorch's Python runtime with the
        target's kernel library (ops/<op>/kernel.h behind executorch_adapter.cpp) loaded into it (host targets only)."""
        import ctypes

        from edgebit.runtimes.base import operator_module

        if not target.is_host:
            raise ValueError(f"operator runners run in this process: {target.name} is not the host")
        # The runtime first (it loads the ExecuTorch libraries the kernels link to), then the kernels into it.
        from executorch.extension.pybindings import portable_lib

        library = executorch_build.build(target) / "lib" / executorch_build.KERNEL_LIBRARY
        ctypes.CDLL(str(library), mode=ctypes.RTLD_GLOBAL)

        def run(*args):
            module, inputs = operator_module(op, *args)
            buffer = _program(module, inputs, None, tied_head=False)  # must outlive the loaded program
            program = portable_lib._load_for_executorch_from_buffer(buffer)
            outputs = tuple(t.numpy().copy() for t in program.forward(inputs))
            del program
            return outputs

        return run
