"""Builds the C++ device runner (runner.cc) for a target with its (cross) compiler, cached by source and toolchain.

The runner compiles against the tvm_ffi headers of the installed wheel (the same headers serve every architecture)
and links the target's libtvm_runtime.so + libtvm_ffi.so, which the bundle ships in ``lib/`` beside ``bin/``.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

from edgebit.toolchain import provision
from edgebit.toolchain.compiler import require_compiler
from edgebit.toolchain.sanitize import sanitizer_flags
from edgebit.bundle.layout import RUNNER_NAME
from edgebit.errors import EdgebitError
from edgebit.runtimes.base import DRIVER_HEADER
from edgebit.targets import Target
from edgebit.runtimes.tvm.runtime_libs import runtime_libraries

RUNNER_SOURCE = Path(__file__).parent / "runner.cc"


def _ffi_include_dirs() -> list[Path]:
    import tvm_ffi

    root = Path(tvm_ffi.__file__).parent
    return [root / "include", root / "3rdparty" / "dlpack" / "include"]


def build_runner(target: Target) -> Path:
    """Path of the runner binary for ``target`` (built on first use)."""
    require_compiler(target)
    libraries = runtime_libraries(target)
    sanitize = sanitizer_flags(target)
    digest = hashlib.sha256(RUNNER_SOURCE.read_bytes() + DRIVER_HEADER.read_bytes() + target.cxx.encode()
                            + " ".join(sanitize).encode()
                            + b"".join(p.read_bytes()[:4096] for p in libraries)).hexdigest()[:16]

    def build(staging: Path) -> None:
        command = [target.cxx, "-std=c++17", "-O2", *sanitize, *(f"-I{d}" for d in _ffi_include_dirs()),
                   f"-I{DRIVER_HEADER.parent}", str(RUNNER_SOURCE),
                   "-o", str(staging / RUNNER_NAME), *sorted({f"-L{p.parent}" for p in libraries}), "-Wl,--no-as-needed",
                   "-ltvm_runtime", "-ltvm_ffi", "-Wl,--as-needed", "-Wl,-rpath,$ORIGIN/../lib"]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise EdgebitError(f"building the device runner for {target.name} failed: "
                               f"{result.stderr.strip().splitlines()[-1] if result.stderr.strip() else 'no output'}")

    return provision.cached_build(provision.cache_dir() / "runner" / f"{target.name}-{digest}", build) / RUNNER_NAME
