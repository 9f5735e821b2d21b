"""``edgebit::ternary_linear``: a BitNet b1.58 linear layer as one operator (see SPEC.md)."""

from .reference import ternary_linear, ternary_linear_reference

__all__ = ["ternary_linear", "ternary_linear_reference"]
