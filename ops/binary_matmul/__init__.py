"""``edgebit::binary_linear``: a Bi-Mamba FBI-Linear layer as one operator (see SPEC.md)."""

from .reference import binary_linear, binary_linear_reference, pack_signs, unpack_signs

__all__ = ["calling_layer", "binary_linear", "binary_linear_reference", "pack_signs", "unpack_signs"]


def calling_layer(x, w_signs, alpha, beta, in_features):
    """(layer, inputs): the model layer that calls this operator (packed weights inside it), for operator tests."""
    from edgebit.models.bimamba.model import FBILinear

    layer = FBILinear(in_features, w_signs.shape[0])
    layer.set_packed(w_signs, alpha, beta)
    return layer, (x,)
