"""The TVM runtime libraries a device needs (``libtvm_runtime.so`` + ``libtvm_ffi.so``), per architecture, cached.

* amd64: the installed apache-tvm / apache-tvm-ffi wheels' own libraries;
* arm64: the same versions' manylinux aarch64 wheels from PyPI (downloaded once, two files extracted);
* riscv64: no wheels exist; cross-built from the sources the x86 wheels ship (edgebit.runtimes.tvm.runtime_build).
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

from edgebit.toolchain import provision
from edgebit.errors import EdgebitError
from edgebit.targets import Target

LIBRARIES = ("libtvm_runtime.so", "libtvm_ffi.so")
WHEELS = {"libtvm_runtime.so": "apache-tvm", "libtvm_ffi.so": "apache-tvm-ffi"}


def _installed_library(name: str) -> Path:
    import tvm
    import tvm_ffi

    package = Path(tvm.__file__).parent if name == "libtvm_runtime.so" else Path(tvm_ffi.__file__).parent
    path = package / "lib" / name
    if not path.is_file():
        raise EdgebitError(f"{path}: missing from the installed wheel; reinstall with `make setup`")
    return path


def _from_wheels(debian_arch: str, destination: Path) -> None:
    requirements = [f"{WHEELS[n]}=={importlib.metadata.version(WHEELS[n])}" for n in LIBRARIES]
    provision.extract_from_wheels(
        requirements, debian_arch,
        lambda member: Path(member).name if Path(member).name in LIBRARIES and "/lib/" in member else None,
        destination)


def runtime_libraries(target: Target) -> list[Path]:
    """Paths of the runtime libraries for ``target``'s architecture (fetched or built on first use)."""
    debian_arch = target.debian_arch
    if debian_arch == "amd64":
        return [_installed_library(name) for name in LIBRARIES]
    versions = "-".join(importlib.metadata.version(WHEELS[n]) for n in LIBRARIES)
    final = provision.cache_dir() / "tvm-runtime" / f"{debian_arch}-{versions}"

    def build(staging: Path) -> None:
        if debian_arch in provision.WHEEL_PLATFORMS:
            _from_wheels(debian_arch, staging)
        elif target.cross_prefix:
            from edgebit.runtimes.tvm.runtime_build import build_runtime

            build_runtime(target, staging)
        else:
            raise EdgebitError(f"no TVM runtime for architecture {debian_arch!r}")
        missing = [n for n in LIBRARIES if not (staging / n).is_file()]
        if missing:
            raise EdgebitError(f"the {debian_arch} TVM runtime lacks {', '.join(missing)}")

    root = provision.cached_build(final, build)
    return [root / name for name in LIBRARIES]
