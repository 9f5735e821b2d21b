"""The one function every runtime backend exports: a model's recurrent ``step`` with explicit state.

BitNet: ``step(tokens [1, T], position [1], k_cache, v_cache) -> (logits [1, T, V], k_cache, v_cache)``;
Bi-Mamba: ``step(tokens [1, T], conv_state, ssm_state) -> (logits, conv_state, ssm_state)``. T is symbolic, so one
graph serves prefill and decode. ``model.conf`` tells a device runner (any runtime) how to drive it.
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
    state_shapes: list[tuple[int, ...]]  # recurrent inputs = outputs after the logits (KV caches, SSM states)
    takes_position: bool  # whether the step takes the absolute position of its first token
    max_seq_len: int

    @property
    def input_names(self) -> list[str]:
        states = ["k_cache", "v_cache"] if self.takes_position else ["conv_state", "ssm_state"]
        return ["tokens", *(["position"] if self.takes_position else []), *states]

    @property
    def output_names(self) -> list[str]:
        return ["logits", *(f"{name}_out" for name in self.input_names[-len(self.state_shapes):])]

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
        conv, ssm = step.empty_state()
        return StepGraph(step, (ids, conv, ssm), ({1: tokens}, None, None), [step.conv_shape, step.ssm_shape],
                         False, max_seq_len)
    step = StaticCacheStep(model, max_seq_len).eval()
    k_cache, v_cache = step.empty_cache()
    return StepGraph(step, (ids, torch.zeros(1, dtype=torch.long), k_cache, v_cache), ({1: tokens}, None, None, None),
                     [step.cache_shape, step.cache_shape], True, max_seq_len)
