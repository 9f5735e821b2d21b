"""Hugging Face cache folders as checkpoints, as they are: ``huggingface-cli download`` / ``snapshot_download``
leave ``models--ORG--NAME/`` with ``refs/main`` naming a commit and ``snapshots/COMMIT/`` whose files are symlinks
into ``blobs/``. A snapshot folder is a checkpoint directory already (the links are followed); the repository folder
is resolved here to the snapshot its ``refs/main`` names (or its only snapshot), never by downloading anything.
"""

from __future__ import annotations

from pathlib import Path

from edgebit.errors import CheckpointError

CONFIG = "config.json"


def resolve_checkpoint_dir(path: Path) -> Path:
    """``path``, or the snapshot it stands for when it is a Hugging Face cache repository folder."""
    path = Path(path)
    snapshots = path / "snapshots"
    if (path / CONFIG).exists() or not snapshots.is_dir():
        return path
    ref = path / "refs" / "main"
    if ref.is_file():
        commit = ref.read_text().strip()
        chosen = snapshots / commit
        if commit and "/" not in commit and chosen.is_dir():
            return chosen
        raise CheckpointError(f"{path}: refs/main names {commit[:40]!r} but snapshots/ has no such folder; download "
                              "the model again or pass one of its snapshots/ folders")
    found = sorted(p for p in snapshots.iterdir() if p.is_dir())
    if len(found) == 1:
        return found[0]
    raise CheckpointError(f"{path}: a Hugging Face cache folder with {len(found)} snapshots and no refs/main; pass "
                          "one of them (" + ", ".join(str(p) for p in found[:3]) + ")" if found else
                          f"{path}: a Hugging Face cache folder without snapshots; download the model again")


def checkpoint_name(path: Path) -> str:
    """A short name for ``path`` (default bundle names): the model's name for cache folders, not a commit hash."""
    path = Path(path)
    repository = path.parent.parent if path.parent.name == "snapshots" else path
    if repository.name.startswith("models--"):
        return repository.name.split("--")[-1]
    return path.name
