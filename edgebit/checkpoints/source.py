"""A checked view of a checkpoint's tensors: every read names the tensor, checks its shape and rejects all-zero
weights (some published BitNet files shipped all-zero tensors; loading them silently gives a broken model)."""

from __future__ import annotations

from pathlib import Path

import torch

from edgebit.errors import CheckpointError


class TensorSource:
    def __init__(self, directory: Path, tensors: dict[str, torch.Tensor]):
        self.directory = directory
        self.tensors = tensors

    def has(self, name: str) -> bool:
        return name in self.tensors

    def take(self, name: str, shape: tuple[int, ...] | None = None, allow_zero: bool = False) -> torch.Tensor:
        """The tensor ``name``; ``shape`` (if given) must match exactly."""
        if name not in self.tensors:
            raise CheckpointError(f"{self.directory}: tensor {name!r} is missing; the checkpoint is incomplete or "
                                  "its config does not match its weights")
        tensor = self.tensors[name]
        if shape is not None and tuple(tensor.shape) != tuple(shape):
            raise CheckpointError(f"{self.directory}: tensor {name!r} has shape {tuple(tensor.shape)}, the config "
                                  f"implies {tuple(shape)}; the config does not match the weights")
        if not allow_zero and tensor.numel() and not bool(tensor.to(torch.float32).any()):
            raise CheckpointError(f"{self.directory}: tensor {name!r} is all zeros, a known defect of some "
                                  "published files; download the checkpoint again from a good source")
        return tensor

    def check_ternary(self, name: str, layer) -> None:
        """A ternary layer whose weights all decode to 0 is as broken as an all-zero tensor."""
        if not bool(layer.ternary_codes().any()):
            raise CheckpointError(f"{self.directory}: tensor {name!r} decodes to all-zero ternary weights; "
                                  "the file is damaged: download the checkpoint again from a good source")
