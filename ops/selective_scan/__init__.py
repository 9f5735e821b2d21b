"""``edgebit::selective_scan``: the Mamba-2 (SSD) state-space recurrence as one operator (see SPEC.md)."""

from .reference import selective_scan, selective_scan_chunked, selective_scan_reference

__all__ = ["calling_layer", "selective_scan", "selective_scan_chunked", "selective_scan_reference"]


def calling_layer(*args):
    """(layer, inputs): the model layer that calls this operator (every tensor an input), for operator tests."""
    from edgebit.models.bimamba.model import SelectiveScan

    return SelectiveScan(), tuple(args)
