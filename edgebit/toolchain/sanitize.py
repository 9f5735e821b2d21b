"""Sanitized builds: ``EDGEBIT_SANITIZE=1`` builds the device runners and custom-op libraries with AddressSanitizer
and UndefinedBehaviorSanitizer, so the tests can run them over good and bad inputs and see every memory error or
undefined operation instead of a lucky pass.

Host target only (the sanitizer runtimes are the host compiler's). The runtimes are linked as shared libraries,
``libasan.so`` first in the runner's dependencies as ASan requires, and the bundle carries them in ``loader/`` like
the rest of the C++ runtime (edgebit.toolchain.c_runtime). Sanitized builds have their own cache entries (the flags
are part of every build's cache key). Reports make the runner exit non-zero; the tests set ``ASAN_OPTIONS`` /
``UBSAN_OPTIONS`` for the exit codes they look for.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from edgebit.errors import EdgebitError
from edgebit.targets import Target

SANITIZE_ENV = "EDGEBIT_SANITIZE"
FLAGS = ("-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer", "-g")
RUNTIMES = ("libasan.so.8", "libubsan.so.1")


def enabled() -> bool:
    value = os.environ.get(SANITIZE_ENV, "")
    if value not in ("", "0", "1"):
        raise EdgebitError(f"{SANITIZE_ENV}={value!r}: use 1 (sanitized builds) or 0")
    return value == "1"


def sanitizer_flags(target: Target) -> list[str]:
    """Compiler and linker flags for every C++ build of ``target`` (none unless EDGEBIT_SANITIZE=1)."""
    if not enabled():
        return []
    if not target.is_host:
        raise EdgebitError(f"{SANITIZE_ENV}=1 builds for the host only; unset it to export for {target.name}")
    return list(FLAGS)


def sanitizer_runtime_files(target: Target) -> dict[str, Path]:
    """{file name: host file} of the sanitizer runtimes a sanitized bundle carries (none otherwise)."""
    if not sanitizer_flags(target):
        return {}
    found = {}
    for name in RUNTIMES:
        path = subprocess.run([target.cxx, f"-print-file-name={name}"], capture_output=True, text=True).stdout.strip()
        if not Path(path).is_absolute() or not Path(path).exists():
            raise EdgebitError(f"{target.cxx} has no {name}; install the compiler's sanitizer runtimes "
                               "(apt-get install libasan8 libubsan1)")
        found[name] = Path(path).resolve()
    return found
