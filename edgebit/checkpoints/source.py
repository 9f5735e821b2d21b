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

    def check_fits(self, config) -> None:
        """Before a model is built from ``config`` (a family's config, with ``weight_count()`` and
        ``num_hidden_layers``): the files must be able to hold it. Every layer stores at least one tensor and every
        stored value at most 8 weights (1-bit signs), so a config beyond that does not describe these files, and
        building its model would only allocate memory the files never had."""
        stored = sum(t.numel() for t in self.tensors.values())
        weights, layers = config.weight_count(), config.num_hidden_layers
        if weights > 8 * stored or layers > len(self.tensors):
            raise CheckpointError(f"{self.directory}: config.json describes {layers:,} layers and {weights:,} weights "
                                  f"but the weight files hold {len(self.tensors):,} tensors of {stored:,} values; "
                                  "config.json does not match the weights: restore it from the original checkpoint")

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
