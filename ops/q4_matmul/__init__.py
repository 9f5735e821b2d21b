"""``edgebit::q4_linear``: the 4-bit grouped output head as one operator (see SPEC.md)."""

from .reference import block_size_for, q4_linear, q4_linear_reference, quantize_blocks_q4

__all__ = ["block_size_for", "calling_layer", "q4_linear", "q4_linear_reference", "quantize_blocks_q4"]


def calling_layer(x, w_codes, w_scale, in_features, block_size):
    """(layer, inputs): the model module that calls this operator (its table inside), for operator tests."""
    from edgebit.models.head import HeadOfTable, QuantizedTable

    return HeadOfTable(QuantizedTable.from_codes(w_codes, w_scale, in_features, block_size, bits=4)), (x,)
