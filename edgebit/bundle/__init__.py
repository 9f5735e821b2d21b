"""The bundle: a directory with everything a device needs, described by ``manifest.json``.

File names inside a bundle are defined once, in :mod:`edgebit.bundle.layout`. Each runtime (TVM, ONNX Runtime custom and
portable forms, ExecuTorch) has its own directory ``runtimes/<name>/`` with its model file, ``model.conf``, its
device runner ``bin/edgebit-runner`` and the libraries in ``lib/``; the tokenizer and the reference vectors are
shared. A bundle is written into a staging directory beside its destination and swapped into place at the end, one
writer per destination at a time (:mod:`edgebit.bundle.output`): the destination holds either the previous bundle
intact or the new complete one, whether the export fails, is interrupted, killed or runs out of disk space.
``manifest.json`` records the format version, the model, the target, the runtime, the edgebit version and the
sha256 of every other file; :meth:`Bundle.verify` checks them before anything runs.
"""

from __future__ import annotations

import json
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from edgebit import __version__
from edgebit.checkpoints.files import read_json, sha256_of

from edgebit.bundle.layout import (LIB_DIR, LOADER_DIR, MANIFEST, MANIFEST_SIG, MODEL_CONF, REFERENCE_INPUTS,
                                   REFERENCE_LOGITS, RUNNER, RUNTIMES_DIR, TOKENIZER, runtime_dir)
from edgebit.bundle.manifest import FORMAT_VERSION, Manifest, ManifestError
from edgebit.bundle.output import Output


__all__ = ["LIB_DIR", "LOADER_DIR", "MANIFEST", "MODEL_CONF", "REFERENCE_INPUTS", "REFERENCE_LOGITS", "RUNNER",
           "RUNTIMES_DIR", "TOKENIZER", "Bundle", "BundleError", "BundleWriter", "runtime_dir"]  # one import for users

BundleError = ManifestError  # a bundle that is incomplete, altered or not for this device


class BundleWriter:
    """Collect files in a staging directory; :meth:`commit` hashes them, writes the manifest and swaps it in.

    Use it as a context manager: from construction to exit it holds the destination's lock (a second writer fails at
    once with a BundleError), and on exit it removes its staging and scratch directories. Construction first removes
    what killed writers left for this destination. A full, read-only or forbidden output file system is a
    BundleError of one line (:meth:`Output.disk_error`)."""

    def __init__(self, destination: Path):
        self.output = Output(destination)
        self.destination = self.output.destination
        self.staging = self.output.staging
        self.expected = 0  # bytes the bundle will hold, where the caller said (expect); for the disk-full message
        self.written = 0
        with self._disk_errors():
            self.output.parent.mkdir(parents=True, exist_ok=True)
            self.output.acquire()
        try:
            with self._disk_errors():
                self.output.remove_leftovers()
                if self.destination.exists() and not (self.destination / MANIFEST).is_file():
                    raise BundleError(f"{self.destination} exists and is not a bundle; choose another output "
                                      "directory (an existing bundle there is replaced, anything else is left alone)")
                self.staging.mkdir(mode=0o700)
        except BaseException:
            self.output.release()
            raise

    def path(self, relative: str) -> Path:
        """Where to write ``relative`` inside the staging directory (parents created)."""
        target = self.staging / relative
        with self._disk_errors():
            target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def add_file(self, source: Path, relative: str) -> None:
        size = Path(source).stat().st_size
        with self._disk_errors(size):
            shutil.copy2(source, self.path(relative))
        self.written += size

    def write_bytes(self, relative: str, data: bytes) -> None:
        with self._disk_errors(len(data)):
            self.path(relative).write_bytes(data)
        self.written += len(data)

    def expect(self, size: int) -> None:
        """The bundle will hold about ``size`` bytes (said in the message when the disk fills up)."""
        self.expected = size

    def scratch(self, name: str) -> Path:
        """A new empty work directory ``name`` outside the bundle (builds write there before add_file); removed with
        the staging directory, also by the next writer for this destination if this process is killed."""
        directory = self.output.make_scratch() / name
        directory.mkdir()
        return directory

    @contextmanager
    def _disk_errors(self, size: int = 0):
        try:
            yield
        except OSError as exc:
            if self.output.locked:
                self.output.remove_own()  # first, so the message says how much is free without it
            message = self.output.disk_error(exc, max(self.expected, self.written + size))
            if message is None:
                raise
            raise BundleError(message) from None

    def commit(self, manifest: dict, signer: Callable[[bytes], bytes] | None = None) -> "Bundle":
        """``manifest``: the model, target, runtimes and built_on records; files and versions are added here.
        ``signer`` (manifest bytes -> signature, edgebit.bundle.signing) writes MANIFEST_SIG before the rename."""
        with self._disk_errors():
            self._write_manifest(manifest, signer)
            self.output.swap_in()
        return Bundle.open(self.destination)

    def _write_manifest(self, manifest: dict, signer: Callable[[bytes], bytes] | None) -> None:
        files = {str(p.relative_to(self.staging)): sha256_of(p)
                 for p in sorted(self.staging.rglob("*")) if p.is_file()}
        full = Manifest.from_dict({"format_version": FORMAT_VERSION, "edgebit_version": __version__, **manifest,
                                   "files": files}).to_dict()
        (self.staging / MANIFEST).write_text(json.dumps(full, indent=2, sort_keys=True) + "\n")
        if signer is not None:
            (self.staging / MANIFEST_SIG).write_bytes(signer((self.staging / MANIFEST).read_bytes()))
        self.staging.chmod(0o755)  # private while it was being written

    def abort(self) -> None:
        """Remove the staging and scratch directories (the lock is held until exit)."""
        self.output.remove_own()

    def __enter__(self) -> "BundleWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self.abort()
        finally:
            self.output.release()


@dataclass
class Bundle:
    root: Path
    manifest: Manifest

    @classmethod
    def open(cls, root: Path) -> "Bundle":
        root = Path(root)
        path = root / MANIFEST
        if not path.is_file():
            raise BundleError(f"{root}: not a bundle (no {MANIFEST}); create one with `edgebit export`")
        manifest = read_json(path, BundleError, "export the bundle again")
        return cls(root, Manifest.from_dict(manifest, str(path)))

    @property
    def target(self) -> str:
        return self.manifest.target.name

    @property
    def debian_arch(self) -> str:
        return self.manifest.target.debian_arch

    @property
    def runtimes(self) -> list[str]:
        """The runtimes this bundle carries, in the registry's order (tvm first)."""
        from edgebit.runtimes import RUNTIMES

        return sorted(self.manifest.runtimes, key=lambda r: RUNTIMES.index(r) if r in RUNTIMES else len(RUNTIMES))

    def check_runtime(self, runtime: str | None) -> str:
        """``runtime`` if the bundle has it (None: the first one), else a user error naming what it has."""
        if runtime is None:
            return self.runtimes[0]
        if runtime not in self.manifest.runtimes:
            raise BundleError(f"{self.root} has no {runtime!r} runtime (it has {', '.join(self.runtimes)}); "
                              f"export with --runtime {runtime}")
        return runtime

    def file(self, relative: str) -> Path:
        return self.root / relative

    def has(self, relative: str) -> bool:
        return relative in self.manifest.files

    def verify(self) -> None:
        """Every listed file exists with its recorded sha256 and no unlisted file was added."""
        listed = self.manifest.files
        for relative, expected in listed.items():
            path = self.root / relative
            if not path.is_file():
                raise BundleError(f"{self.root}: {relative} is missing; export the bundle again")
            if sha256_of(path) != expected:
                raise BundleError(f"{self.root}: {relative} does not match its sha256 in {MANIFEST} "
                                  "(the file was altered or the manifest edited); export the bundle again")
        present = {str(p.relative_to(self.root)) for p in self.root.rglob("*") if p.is_file()}
        present -= {MANIFEST, MANIFEST_SIG}  # the signature signs the manifest, so neither lists itself
        extra = sorted(present - set(listed))
        if extra:
            raise BundleError(f"{self.root}: {extra[0]} is not listed in {MANIFEST}; remove it or export again")
