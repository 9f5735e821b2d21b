"""Checkpoint loading: detect a directory's layout and build the matching edgebit model.

Layouts, in the order they are recognized: edgebit's own packed format (``edgebit_format`` in config.json, any
family), then each registered family's layouts (``Family.layouts``: Hugging Face BitNet, 1bitLLM, Hugging Face
Mamba-2, mamba_ssm / Bi-Mamba release). A new layout is one :class:`~edgebit.checkpoints.layout.Layout` in its
family's record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from edgebit.checkpoints.hf_cache import resolve_checkpoint_dir
from edgebit.checkpoints import edgebit_format
from edgebit.checkpoints.files import read_config, read_tensors, verify_pins
from edgebit.checkpoints.layout import Layout
from edgebit.checkpoints.source import TensorSource
from edgebit.errors import CheckpointError

EDGEBIT_LAYOUT = Layout("edgebit", "edgebit packed checkpoint",
                        lambda config, source: edgebit_format.is_edgebit_checkpoint(config),
                        edgebit_format.load_checkpoint_dir)


@dataclass(frozen=True)
class LoadOptions:
    """How to open a checkpoint: ``allow_pickle`` permits pickled ``pytorch_model.bin`` weights (unpickling runs
    code); ``sha256`` pins files by name to their digests."""

    allow_pickle: bool = False
    sha256: dict[str, str] = field(default_factory=dict)


def layouts() -> list[Layout]:
    from edgebit.models import families

    return [EDGEBIT_LAYOUT, *(layout for family in families().values() for layout in family.layouts)]


def detect_layout(config: dict, source: TensorSource) -> Layout:
    known = layouts()
    for layout in known:
        if layout.detect(config, source):
            return layout
    model_type = config.get("model_type", "<none>")
    hint = " (a plain LLaMA checkpoint has no BitNet sub-norms)" if model_type == "llama" else ""
    raise CheckpointError(f"{source.directory}: unknown architecture model_type={model_type!r}{hint}; "
                          f"edgebit reads: {', '.join(layout.description for layout in known)}")


def load_checkpoint(path: str | Path, options: LoadOptions | None = None, *, allow_pickle: bool | None = None,
                    sha256: dict[str, str] | None = None) -> nn.Module:
    """Load a local checkpoint directory (never downloads; a Hugging Face cache folder as it is) into an edgebit
    model in eval mode.

    ``options`` (or the ``allow_pickle`` / ``sha256`` keywords) say whether pickled weights are permitted and
    which files are pinned to a sha256.
    """
    options = options or LoadOptions(bool(allow_pickle), dict(sha256 or {}))
    directory = resolve_checkpoint_dir(Path(path))
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: not a directory; pass a local checkpoint directory")
    config = read_config(directory)
    if options.sha256:
        verify_pins(directory, options.sha256)
    source = TensorSource(directory, read_tensors(directory, allow_pickle=options.allow_pickle))
    layout = detect_layout(config, source)
    model = layout.load(config, source)
    model.layout = layout.name
    return model.eval()
