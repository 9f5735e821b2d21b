"""``edgebit::ternary_linear``: a BitNet b1.58 linear layer as one operator (see SPEC.md)."""

from .reference import ternary_linear, ternary_linear_reference

__all__ = ["calling_layer", "ternary_linear", "ternary_linear_reference"]


def calling_layer(x, w_packed, w_scale, in_features):
    """(layer, inputs): the model layer that calls this operator (packed weights inside it), for operator tests."""
    from edgebit.models.bitnet.model import TernaryLinear

    layer = TernaryLinear(in_features, w_packed.shape[0])
    layer.set_packed(w_packed, w_scale)
    return layer, (x,)
