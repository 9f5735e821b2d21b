"""PyTorch reference of ``edgebit::grouped_attention`` (SPEC.md), its torch.library registration, and the module a
step graph calls it through."""

from __future__ import annotations

import math

import torch
from torch import nn

_lib = torch.library.Library("edgebit", "FRAGMENT")
_lib.define("grouped_attention(Tensor q, Tensor prefix_k, Tensor prefix_v, Tensor new_k, Tensor new_v, "
            "Tensor positions) -> Tensor")


def grouped_attention_reference(q, prefix_k, prefix_v, new_k, new_v, positions):
    """SPEC.md in torch ops that every exporter traces (a float16 cache is widened after the concatenation)."""
    keys = torch.cat((prefix_k, new_k)).float().transpose(0, 1)  # [Hkv, P + T, D]
    values = torch.cat((prefix_v, new_v)).float().transpose(0, 1)
    return attention_over_slots(q, keys, values, positions)


def attention_over_slots(q, keys, values, positions):
    """q [1, H, T, D] at absolute ``positions`` [T]; keys / values [Hkv, S, D], slot s holding position s; query t
    sees slots s <= positions[t]. The G = H / Hkv query heads of one KV head are stacked into one matrix
    [Hkv, G * T, D], so each KV head is read once and none is copied G times. Returns [1, T, H * D]."""
    _, heads, t, d = q.shape
    kv_heads, slots = keys.shape[0], keys.shape[1]
    group = heads // kv_heads
    stacked = q[0].reshape(kv_heads, group * t, d)  # head h = kv * G + g: rows g * T + t of KV head kv
    scores = (stacked @ keys.transpose(1, 2)) * (1.0 / math.sqrt(d))  # [Hkv, G * T, S]
    visible = torch.arange(slots)[None, :] <= positions[:, None]  # [T, S]
    scores = scores + ((visible.float() - 1.0) * 1e30).repeat(group, 1)  # exp underflows to 0 where hidden
    out = torch.softmax(scores, dim=-1) @ values  # [Hkv, G * T, D]
    # split G * T, then move T out (merging Hkv and G in one view trips torch.export's symbolic stride checks)
    return out.view(kv_heads, group, t, d).permute(2, 0, 1, 3).reshape(1, t, heads * d)


@torch.library.impl(_lib, "grouped_attention", "CompositeExplicitAutograd")
def _impl(q, prefix_k, prefix_v, new_k, new_v, positions):
    return grouped_attention_reference(q, prefix_k, prefix_v, new_k, new_v, positions)


@torch.library.register_fake("edgebit::grouped_attention")
def _fake(q, prefix_k, prefix_v, new_k, new_v, positions):
    return q.new_empty((1, q.shape[2], q.shape[1] * q.shape[3]))


def grouped_attention(q, prefix_k, prefix_v, new_k, new_v, positions):
    return torch.ops.edgebit.grouped_attention(q, prefix_k, prefix_v, new_k, new_v, positions)


class GroupedAttention(nn.Module):
    """Attention over a runner-owned cache (SPEC.md) as a module: exporters trace the torch reference (ONNX: plain
    MatMul / Softmax nodes), while a runtime with a kernel for it sets ``as_operator`` so the graph keeps one
    ``edgebit::grouped_attention`` call (TVM: the C++ kernel, reading the prefix in place)."""

    def __init__(self):
        super().__init__()
        self.as_operator = False

    def forward(self, q, prefix_k, prefix_v, new_k, new_v, positions):
        attend = grouped_attention if self.as_operator else grouped_attention_reference
        return attend(q, prefix_k, prefix_v, new_k, new_v, positions)
