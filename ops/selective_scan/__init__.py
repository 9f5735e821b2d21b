"""``edgebit::selective_scan``: the Mamba-2 (SSD) state-space recurrence as one operator (see SPEC.md)."""

from .reference import selective_scan, selective_scan_chunked, selective_scan_reference

__all__ = ["selective_scan", "selective_scan_chunked", "selective_scan_reference"]
