"""``edgebit::int8_linear``: the quantized output head as one operator (see SPEC.md)."""

from .reference import block_size_for, int8_linear, int8_linear_reference, quantize_rows

__all__ = ["block_size_for", "calling_layer", "int8_linear", "int8_linear_reference", "quantize_rows"]


def calling_layer(x, w_codes, w_scale, in_features, block_size):
    """(layer, inputs): the model module that calls this operator (its table inside), for operator tests."""
    from edgebit.models.head import HeadOfTable, QuantizedTable

    return HeadOfTable(QuantizedTable.from_codes(w_codes, w_scale, in_features, block_size)), (x,)
