"""The one function every runtime backend exports: a model's recurrent ``step`` with explicit state.

BitNet: ``step(tokens [1, T], position [1], key_cache.0, value_cache.0, ...) -> (logits [1, T, V], caches...)``;
Bi-Mamba: ``step(tokens [1, T], conv_state.0, ssm_state.0, ...) -> (logits, states...)``: one state tensor per layer
and kind, each an input and the matching output. T is symbolic, so one graph serves prefill and decode. ``model.conf`` tells a device runner (any runtime) how to drive it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from edgebit.models.bimamba_static import BiMambaStep
from edgebit.models.bitnet_static import StaticCacheStep


@dataclass
class StepGraph:
    module: torch.nn.Module
    example: tuple  # example inputs for torch.export
    dynamic_shapes: tuple
    state_names: list[str]  # recurrent inputs = outputs after the logits (KV caches, conv and SSM states)
    state_shapes: list[tuple[int, ...]]
    takes_position: bool  # whether the step takes the absolute position of its first token
    max_seq_len: int

    @property
    def input_names(self) -> list[str]:
        return ["tokens", *(["position"] if self.takes_position else []), *self.state_names]

    @property
    def output_names(self) -> list[str]:
        return ["logits", *(f"{name}.out" for name in self.state_names)]

    def runner_conf(self) -> str:
        """model.conf for the device runners: input kinds, the longest sequence, one line per state shape."""
        lines = ["inputs tokens" + (" position" if self.takes_position else ""), f"max_seq_len {self.max_seq_len}"]
        lines += [f"state {' '.join(map(str, shape))}" for shape in self.state_shapes]
        return "\n".join(lines) + "\n"


def step_graph(model, max_seq_len: int) -> StepGraph:
    """The exportable step of ``model`` (BitNet or Bi-Mamba), with example inputs and a symbolic token count."""
    from torch.export import Dim

    tokens = Dim("tokens", min=1, max=max_seq_len)
    ids = torch.zeros(1, 2, dtype=torch.long)
    if model.family == "bimamba":
        step = BiMambaStep(model).eval()
        states = step.empty_state()
        return StepGraph(step, (ids, *states), ({1: tokens}, tuple(None for _ in states)), step.state_names,
                         [tuple(s.shape) for s in states], False, max_seq_len)
    step = StaticCacheStep(model, max_seq_len).eval()
    caches = step.empty_cache()
    return StepGraph(step, (ids, torch.zeros(1, dtype=torch.long), *caches),
                     ({1: tokens}, None, tuple(None for _ in caches)), step.state_names,
                     [tuple(c.shape) for c in caches], True, max_seq_len)
