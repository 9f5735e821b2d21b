"""``edgebit::binary_linear``: a Bi-Mamba FBI-Linear layer as one operator (see SPEC.md)."""

from .reference import binary_linear, binary_linear_reference, pack_signs, unpack_signs

__all__ = ["binary_linear", "binary_linear_reference", "pack_signs", "unpack_signs"]
