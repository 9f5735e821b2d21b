"""Bi-Mamba as one pure tensor function with explicit recurrent state: what torch.export and the device need.

``step(tokens [1, T], conv_state [L, 1, C, K], ssm_state [L, 1, H, P, N]) -> (logits [1, T, V], conv_state,
ssm_state)``. Prefill is a step over the prompt from zero states, decode a step of one token; T is symbolic when
exported. The conv state holds the last K inputs of each layer's causal conv1d, the SSM state the scan's state.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgebit.models.bimamba import BiMambaForCausalLM
from edgebit.models.layers import output_logits
from edgebit_ops.selective_scan import selective_scan


class BiMambaStep(nn.Module):
    def __init__(self, model: BiMambaForCausalLM):
        super().__init__()
        self.model = model
        c = model.config
        self.conv_shape = (c.num_hidden_layers, 1, c.conv_dim, c.conv_kernel)
        self.ssm_shape = (c.num_hidden_layers, 1, c.num_heads, c.head_dim, c.state_size)

    def empty_state(self) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.zeros(self.conv_shape), torch.zeros(self.ssm_shape)

    def forward(self, tokens: torch.Tensor, conv_state: torch.Tensor, ssm_state: torch.Tensor):
        model = self.model
        c = model.config
        t = tokens.shape[1]
        x = model.embeddings(tokens).float()
        convs, ssms = [], []
        for i, block in enumerate(model.layers):
            mixer = block.mixer
            z, xbc, dt = mixer.in_proj(block.norm(x)).split([c.intermediate_size, c.conv_dim, c.num_heads], dim=-1)
            history = torch.cat([conv_state[i][..., 1:], xbc.transpose(1, 2)], dim=-1)  # [1, C, K-1+T]
            convs.append(history[..., t - 1:])  # the last K inputs
            weight = mixer.conv1d.weight
            xbc = F.silu(F.conv1d(history, weight, mixer.conv1d.bias, groups=weight.shape[0])).transpose(1, 2)
            xs, B, C = xbc.split([c.intermediate_size, c.n_groups * c.state_size, c.n_groups * c.state_size], dim=-1)
            dt = F.softplus(dt + mixer.dt_bias).clamp(*c.time_step_limit)
            y, final = selective_scan(xs.reshape(1, t, c.num_heads, c.head_dim), dt, -torch.exp(mixer.A_log.float()),
                                      B.reshape(1, t, c.n_groups, c.state_size),
                                      C.reshape(1, t, c.n_groups, c.state_size), mixer.D, ssm_state[i])
            ssms.append(final)
            x = x + mixer.out_proj(mixer.norm(y.reshape(1, t, -1), z))
        return output_logits(model.norm_f(x), model.embeddings, model.lm_head), torch.stack(convs), torch.stack(ssms)
