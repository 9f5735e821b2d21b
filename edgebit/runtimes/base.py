"""The interface every runtime implements: what a bundle's ``runtimes/<name>/`` directory is made from.

A runtime's directory holds its model file, ``model.conf`` (bundle.layout.MODEL_CONF: the state shapes for the
runner), its device runner ``bin/edgebit-runner`` (bundle.layout.RUNNER) and the libraries in ``lib/``. Every
runner speaks the same protocol (edgebit/runtimes/runner_driver.h), so run, validate, generate and bench work the
same for all of them.
"""

from __future__ import annotations

import abc
from pathlib import Path

from edgebit.targets import Target

DRIVER_HEADER = Path(__file__).parent / "runner_driver.h"  # the command line and protocol every runner shares


class Runtime(abc.ABC):
    name: str  # the --runtime name and the bundle directory runtimes/<name>/
    model_file: str  # the model file inside the runtime directory

    @abc.abstractmethod
    def unsupported_reason(self, target: Target, family: str) -> str | None:
        """Why this runtime cannot serve ``family`` models on ``target`` (None when it can)."""

    @abc.abstractmethod
    def version(self) -> str:
        """The runtime's version, recorded in the manifest."""

    @abc.abstractmethod
    def build(self, model, target: Target, max_seq_len: int, work: Path) -> dict[str, Path]:
        """The runtime directory's files for ``model`` on ``target``: {path inside the directory: host file}.

        ``work`` is a scratch directory that lives until the files are copied into the bundle.
        """
