"""Bi-Mamba as one pure tensor function with explicit recurrent state: what torch.export and the device need.

``step(tokens [1, T], logit_rows [R], conv_0 [1, C, K], ssm_0 [1, H, P, N], conv_1, ...) -> (logits [1, R, V], conv_0,
ssm_0, ...)``, the logits of the R tokens ``logit_rows`` names (edgebit.models.step_graph.logit_rows).
Prefill is a step over the prompt from zero states, decode a step of one token; T is symbolic when exported. The
conv state holds the last K inputs of a layer's causal conv1d, the SSM state the scan's state. Each layer's states
are separate inputs and outputs (as ONNX Runtime GenAI lays them out; stacking them would copy every state on every
step, through an L-way select per element in TVM).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgebit.models.bimamba.model import BiMambaForCausalLM
from edgebit.models.head import output_logits
from edgebit.models.step_graph import StepGraph, logit_rows, logit_rows_dim, token_dim


class BiMambaStep(nn.Module):
    def __init__(self, model: BiMambaForCausalLM):
        super().__init__()
        self.model = model
        c = model.config
        self.conv_shape = (1, c.conv_dim, c.conv_kernel)
        self.ssm_shape = (1, c.num_heads, c.head_dim, c.state_size)
        self.state_names = [f"{kind}_state.{i}" for i in range(c.num_hidden_layers) for kind in ("conv", "ssm")]
        self.state_shapes = [self.conv_shape, self.ssm_shape] * c.num_hidden_layers
        # each layer's conv weight as K columns [C, 1] of their own (BiMambaMixer.conv_window)
        for i, block in enumerate(model.layers):
            for j in range(c.conv_kernel):
                self.register_buffer(f"conv_tap_{i}_{j}", block.mixer.conv1d.weight.detach()[:, 0, j:j + 1].clone())

    def empty_state(self) -> list[torch.Tensor]:
        """Zero states in argument order: conv and SSM state of layer 0, then of layer 1, ..."""
        return [torch.zeros(shape) for shape in self.state_shapes]

    def forward(self, tokens: torch.Tensor, logit_rows: torch.Tensor, *states: torch.Tensor):
        model = self.model
        c = model.config
        t = tokens.shape[1]
        x = model.embeddings(tokens).float()
        updated = []
        for i, block in enumerate(model.layers):
            mixer = block.mixer
            z, xbc, dt = mixer.in_proj(block.norm(x)).split([c.intermediate_size, c.conv_dim, c.num_heads], dim=-1)
            history = torch.cat([states[2 * i][..., 1:], xbc.transpose(1, 2)], dim=-1)  # [1, C, K-1+T]
            updated.append(history[..., t - 1:])  # the last K inputs
            taps = [getattr(self, f"conv_tap_{i}_{j}") for j in range(c.conv_kernel)]
            xbc = F.silu(mixer.conv_window(history, t, taps)).transpose(1, 2)
            xs, B, C = xbc.split([c.intermediate_size, c.n_groups * c.state_size, c.n_groups * c.state_size], dim=-1)
            dt = F.softplus(dt + mixer.dt_bias).clamp(*c.time_step_limit)
            y, final = mixer.scan(xs.reshape(1, t, c.num_heads, c.head_dim), dt, -torch.exp(mixer.A_log.float()),
                                 B.reshape(1, t, c.n_groups, c.state_size),
                                 C.reshape(1, t, c.n_groups, c.state_size), mixer.D, states[2 * i + 1])
            updated.append(final)
            x = x + mixer.out_proj(mixer.norm(y.reshape(1, t, -1), z))
        x = x.index_select(1, logit_rows)
        return output_logits(model.norm_f(x), model.embeddings, model.lm_head), *updated


def bimamba_step_graph(model: BiMambaForCausalLM, max_seq_len: int) -> StepGraph:
    """``step(tokens, logit_rows, conv_state.0, ssm_state.0, ...)`` with example inputs for torch.export."""
    step = BiMambaStep(model).eval()
    states = step.empty_state()
    return StepGraph(step, (torch.zeros(1, 2, dtype=torch.long), logit_rows(2), *states),
                     ({1: token_dim(max_seq_len)}, {0: logit_rows_dim(max_seq_len)}, tuple(None for _ in states)),
                     step.state_names, [tuple(s.shape) for s in states], False, max_seq_len,
                     model.config.vocab_size, takes_logit_rows=True)
