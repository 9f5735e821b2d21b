"""Export a packed edgebit model's step (edgebit.models.step_graph) to an ONNX file, in one of two forms.

``custom``: edgebit-domain nodes (TernaryMatMul, BinaryMatMul, SelectiveScan) that need edgebit's ONNX Runtime
kernel library; ``portable``: only standard ONNX ops and ``com.microsoft.MatMulNBits`` (bits=2), which stock
ONNX Runtime (ORT Mobile included, >= 1.26) runs. See edgebit/backends/onnx_ops.py.

The graph's inputs and outputs are named as ``StepGraph.input_names`` / ``output_names`` (tokens, position,
k_cache, v_cache -> logits, k_cache_out, v_cache_out; or the conv and SSM states), the KV cache / SSM state being
explicit inputs and outputs as ONNX Runtime GenAI does; the token count is symbolic (``tokens``). The export is
deterministic: the same model gives a byte-identical file. Models whose weights exceed the exporter's threshold
(~1.5 GB, e.g. BitNet 2B-4T with fp32 embeddings) are saved with their weights in ``<path>.data`` beside it.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from pathlib import Path

import onnx
import torch

from edgebit.runtimes.onnx.operators import portable_operators, register_schemas, translation_table
from edgebit.errors import EdgebitError
from edgebit.models.step_graph import step_graph

FORMS = ("custom", "portable")
OPSET = 20  # ONNX Runtime >= 1.17 (Debian's riscv64 ORT 1.23 included); IR version 10
PACKED_NAMES = (".w_packed", ".w_signs", ".nbits_weight", ".w_codes", ".codes")  # packed buffers, both forms


def export_onnx(model, form: str, max_seq_len: int, path: Path) -> None:
    """Write ``model``'s step graph to ``path`` (an .onnx file) in ``form`` ("custom" or "portable")."""
    save_onnx(model, form, lambda: step_graph(model, max_seq_len), path)


def save_onnx(model, form: str, make_graph, path: Path) -> None:
    """Write the step ``make_graph()`` builds (a StepGraph, or another step of ``model`` with the same ``module``,
    ``example``, ``dynamic_shapes``, ``input_names`` and ``output_names``) to ``path`` in ``form``."""
    if form not in FORMS:
        raise EdgebitError(f"unknown ONNX form {form!r}; choose one of {', '.join(FORMS)}")
    _require_packed(model)
    register_schemas()
    path = Path(path)
    with contextlib.ExitStack() as stack:
        if form == "portable":
            stack.enter_context(portable_operators(model))
        graph = make_graph()
        program = onnx_program(graph.module, graph.example, form, graph.dynamic_shapes, graph.input_names,
                               graph.output_names)
    _strip_node_metadata(program.model)
    program.save(str(path))
    _check_packed_weights(path)


def onnx_program(module, example: tuple, form: str, dynamic_shapes=None, input_names=None, output_names=None):
    """``module`` as an ONNX program in ``form`` (the step of a bundle, or one operator's layer), through
    torch.onnx.export (dynamo) without its progress lines and warnings (it logs, and warns for torchvision)."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "onnxscript")]
    levels = [logger.level for logger in loggers]
    try:
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            # torch.export first: torch.onnx.export mishandles the dynamic shapes of the step's *states.
            program = torch.export.export(module, example, dynamic_shapes=dynamic_shapes)
            return torch.onnx.export(
                program, example, None, dynamo=True, input_names=input_names,
                output_names=output_names, opset_version=OPSET,
                custom_translation_table=translation_table(form), verbose=False)
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _strip_node_metadata(model) -> None:
    """Drop the exporter's per-node metadata (FX node text, stack traces with this machine's source paths): it
    makes files machine-dependent and is most of a small model's bytes."""
    import onnx_ir as ir

    graphs = [model.graph, *model.functions.values()]
    for graph in graphs:
        for node in ir.traversal.RecursiveGraphIterator(graph):
            node.metadata_props.clear()
            for value in node.outputs:
                value.metadata_props.clear()
    for value in model.graph.inputs:
        value.metadata_props.clear()


def _require_packed(model) -> None:
    from edgebit.models.bimamba.model import FBILinear
    from edgebit.models.bitnet.model import TernaryLinear

    latent = [name for name, m in model.named_modules() if isinstance(m, (TernaryLinear, FBILinear))
              and not m.is_packed]
    if latent:
        raise EdgebitError(f"ONNX export needs a packed model; {latent[0]} still has latent weights (pack it first)")


def _check_packed_weights(path: Path) -> None:
    """Guard against the exporter's optimizer unpacking weights (it constant-folds small ones into int8 or uint8
    tensors): every byte-typed initializer must still be one of the packed buffers."""
    proto = onnx.load(str(path), load_external_data=False)
    byte_types = (onnx.TensorProto.UINT8, onnx.TensorProto.INT8)
    unpacked = [t.name for t in proto.graph.initializer
                if t.data_type in byte_types and not (t.data_type == onnx.TensorProto.UINT8
                                                      and t.name.endswith(PACKED_NAMES))]
    if unpacked:
        raise RuntimeError(f"the ONNX exporter unpacked weights into {', '.join(unpacked[:3])}")
