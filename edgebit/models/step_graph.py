"""The one function every runtime backend exports: a model's recurrent ``step`` with explicit state.

Each family builds its own (``Family.step_graph``): BitNet ``step(tokens [1, T], position [1], logit_rows [R],
key_cache.0, value_cache.0, ...) -> (logits [1, R, V], new cache rows...)``, Bi-Mamba ``step(tokens [1, T],
logit_rows [R], conv_state.0, ssm_state.0, ...) -> (logits, states...)``: one state tensor per layer and kind, each an
input and the matching output. ``logit_rows`` picks the tokens whose logits the step computes (:func:`logit_rows`):
all T to score a prompt, only the last one to prefill before generating, which skips R - 1 of the output head's
products (the head is a [V, hidden] matrix: at a 128K vocabulary a fifth of a prompt token's work). A state is
either replaced by its output (Bi-Mamba) or, as BitNet's KV caches, *appended to*: the runner owns a buffer of
``max_seq_len`` rows, passes its filled rows and writes the returned new rows after them (``StepGraph.state_kinds``;
:class:`StepStates` does it on the host). T, R (and the filled length) are symbolic, so one
graph serves prefill and decode. ``model.conf`` tells a device runner (any runtime) how to drive it.

A family may also offer a step in the convention of ExecuTorch's LLM runner (``Family.llm_step_graph``): the state
held inside the module as buffers updated in place, ``step(tokens [1, T], position [1]) -> logits`` and no state
inputs or outputs, plus the metadata methods that runner reads. The ExecuTorch runtime exports that one where it
exists; its model.conf then lists no states.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class StepGraph:
    module: torch.nn.Module
    example: tuple  # example inputs for torch.export
    dynamic_shapes: tuple
    state_names: list[str]  # recurrent inputs = outputs after the logits (KV caches, conv and SSM states)
    state_shapes: list[tuple[int, ...]]
    takes_position: bool  # whether the step takes the absolute position of its first token
    max_seq_len: int
    vocab_size: int  # the runners check token ids against it before anything runs
    # Constant methods a program carries besides the step (name -> int, bool or list of ints): the metadata of
    # ExecuTorch's LLM runner convention, for steps that follow it (Family.llm_step_graph).
    metadata: dict = field(default_factory=dict)
    # Per state: "replace" (the output is the whole next state, as Bi-Mamba's conv and SSM states) or "append" (the
    # input is the filled prefix [P, ...] of a [max_seq_len, ...] buffer the runner owns, the output the T new rows
    # it writes at row P: BitNet's KV caches). Empty: every state is "replace".
    state_kinds: list[str] = field(default_factory=list)
    # Per state: its numpy dtype name ("float32", or "float16" for a KV cache stored at half precision). Empty: every
    # state is float32.
    state_dtypes: list[str] = field(default_factory=list)
    # Whether the step takes ``logit_rows`` (after the position): every family's step does; ExecuTorch's LLM-runner
    # form (a fixed signature) returns every token's logits.
    takes_logit_rows: bool = False

    def kind(self, index: int) -> str:
        return self.state_kinds[index] if self.state_kinds else "replace"

    def dtype(self, index: int) -> str:
        return self.state_dtypes[index] if self.state_dtypes else "float32"

    @property
    def input_names(self) -> list[str]:
        return ["tokens", *(["position"] if self.takes_position else []),
                *(["logit_rows"] if self.takes_logit_rows else []), *self.state_names]

    @property
    def output_names(self) -> list[str]:
        return ["logits", *(f"{name}.out" for name in self.state_names)]

    def runner_conf(self) -> str:
        """model.conf for the device runners: input kinds, the longest sequence, the vocabulary, one line per
        state shape, led by its dtype when it is not float32 (read strictly by runtimes/runner_driver.h)."""
        lines = [" ".join(["inputs", *self.input_names[:len(self.input_names) - len(self.state_names)]]),
                 f"max_seq_len {self.max_seq_len}",
                 f"vocab_size {self.vocab_size}"]
        lines += [" ".join([("cache" if self.kind(i) == "append" else "state"),
                            *([self.dtype(i)] if self.dtype(i) != "float32" else []), *map(str, shape)])
                  for i, shape in enumerate(self.state_shapes)]
        return "\n".join(lines) + "\n"


class StepStates:
    """The recurrent state of a step graph between calls, as a device runner keeps it (runtimes/runner_driver.h):
    "replace" states are swapped for the step's outputs, "append" caches are buffers of ``max_seq_len`` rows whose
    filled prefix goes in and whose new rows come out. For host-side callers (tests, benchmarks): numpy arrays in,
    numpy arrays out, whatever ``step`` takes (``to_input`` converts)."""

    def __init__(self, graph: StepGraph, to_input=lambda array: array):
        import numpy as np

        self.graph, self.to_input = graph, to_input
        self.buffers = [np.zeros(shape, graph.dtype(i)) for i, shape in enumerate(graph.state_shapes)]

    def inputs(self, position: int) -> list:
        return [self.to_input(b[:position] if self.graph.kind(i) == "append" else b)
                for i, b in enumerate(self.buffers)]

    def update(self, outputs, position: int) -> None:
        """Take the step's state outputs (numpy-convertible) after a step that started at ``position``."""
        import numpy as np

        for i, out in enumerate(outputs):
            out = np.asarray(out.detach().numpy() if hasattr(out, "detach") else
                             out.numpy() if hasattr(out, "numpy") else out, self.graph.dtype(i))
            if self.graph.kind(i) == "append":
                self.buffers[i][position:position + out.shape[0]] = out
            else:
                self.buffers[i] = out


@dataclass
class GenAIDecoder:
    """A family's step in ONNX Runtime GenAI's decoder convention (input_ids, attention_mask, position_ids, past ->
    logits, present; see edgebit.models.bitnet.genai_step) and the genai_config.json describing it, whose
    ``model.decoder.filename`` the runtime fills in. Families without a GenAI model type have none."""

    module: torch.nn.Module
    example: tuple  # example inputs for torch.export
    dynamic_shapes: tuple
    input_names: list[str]
    output_names: list[str]
    config: dict  # genai_config.json, without model.decoder.filename


def step_graph(model, max_seq_len: int) -> StepGraph:
    """The exportable step of ``model`` (any registered family), with example inputs and a symbolic token count."""
    from edgebit.models import family_of

    return family_of(model).step_graph(model, max_seq_len)


# The most tokens a device runner passes to one step: it prefills (and computes a prompt's logits) in steps of at
# most this many (runtimes/runner_driver.h kPrefillChunk, the same value). A program whose memory is planned for its
# largest shapes (ExecuTorch) is planned for this many tokens, not for the whole context.
TOKENS_PER_STEP = 64


def logit_rows(count: int, last_only: bool = False):
    """The ``logit_rows`` input of a step over ``count`` tokens: every token's index, or the last one's."""
    return torch.arange(count - 1 if last_only else 0, count, dtype=torch.long)


def logit_rows_dim(max_seq_len: int, most: int | None = None):
    """The symbolic length of ``logit_rows``: 1 to as many as the step's tokens."""
    from torch.export import Dim

    return Dim("logit_rows", min=1, max=min(max_seq_len, most or max_seq_len))


def token_dim(max_seq_len: int, most: int | None = None):
    """The symbolic token count every step graph shares: 1 to ``most`` (default ``max_seq_len``) tokens."""
    from torch.export import Dim

    return Dim("tokens", min=1, max=min(max_seq_len, most or max_seq_len))
