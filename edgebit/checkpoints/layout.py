"""A checkpoint layout: how to recognize a directory written by some project, and how to load it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn

from edgebit.checkpoints.source import TensorSource


@dataclass(frozen=True)
class Layout:
    name: str
    description: str
    detect: Callable[[dict, TensorSource], bool]
    load: Callable[[dict, TensorSource], nn.Module]
