"""``edgebit::grouped_attention``: causal grouped-query attention over a runner-owned KV cache (see SPEC.md)."""

from .reference import GroupedAttention, attention_over_slots, grouped_attention, grouped_attention_reference

__all__ = ["GroupedAttention", "attention_over_slots", "calling_layer", "grouped_attention", "grouped_attention_reference"]


def calling_layer(q, prefix_k, prefix_v, new_k, new_v, positions):
    """(layer, inputs): the module that calls this operator, for operator tests (each runtime decides whether it
    runs it as one kernel: ``GroupedAttention.as_operator``)."""
    return GroupedAttention(), (q, prefix_k, prefix_v, new_k, new_v, positions)
