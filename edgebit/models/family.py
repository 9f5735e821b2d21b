"""The ``Family`` record: everything the pipeline needs to know about one model family, in one place.

Every stage (checkpoint loading and saving, ``inspect``, the step graph every runtime exports, the TVM lowering of
packed weights) asks the family's record instead of comparing family names. A family lives in
``edgebit/models/<family>/`` and its package defines ``FAMILY``; the registry (edgebit.models) lists the packages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from torch import nn

from edgebit.checkpoints.layout import Layout
from edgebit.checkpoints.source import TensorSource
from edgebit.models.step_graph import GenAIDecoder, StepGraph


@dataclass(frozen=True)
class Family:
    name: str  # also ``model_class.family`` and the "family" of edgebit checkpoints and bundles
    description: str
    model_class: type[nn.Module]
    config_class: type
    # Layouts of other projects this family reads (edgebit's own format is shared by every family).
    layouts: tuple[Layout, ...]
    # edgebit's packed format: the tensors to write for a packed model, and the loader of such a directory.
    save_tensors: Callable[[nn.Module, str], dict]
    load_edgebit: Callable[[dict, TensorSource], nn.Module]
    # The one function every runtime exports (prefill and decode), with explicit recurrent state.
    step_graph: Callable[[nn.Module, int], StepGraph]
    # Packed layer classes and their packed buffers (runtimes that lower weights as inputs need them).
    packed_layers: dict[type, tuple[str, ...]]
    # ``edgebit inspect``: counts and sizes as a dict (JSON), and the rows of its table.
    summarize: Callable[[nn.Module], dict]
    summary_rows: Callable[[dict], list[tuple[str, str]]]
    # Weight encodings edgebit's format offers for this family (first: the default).
    encodings: tuple[str, ...] = ("planar2",)
    # The step in ExecuTorch's LLM-runner convention (state in mutable buffers, metadata methods), which the ExecuTorch
    # runtime exports instead of ``step_graph`` when a family has one (edgebit.models.step_graph); None: no such form.
    llm_step_graph: Callable[[nn.Module, int], StepGraph] | None = None
    # Whether ``edgebit binarize`` turns a full-precision checkpoint of this family into a 1-bit one.
    binarizes: bool = False
    # The step as an ONNX Runtime GenAI decoder, given the context length (None where GenAI has no model type for
    # the family): the onnx-portable runtime directory is then also a GenAI model folder.
    genai_decoder: Callable[[nn.Module, int], GenAIDecoder] | None = None
    notes: dict = field(default_factory=dict)
