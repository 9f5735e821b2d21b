"""The TVM runtime libraries a device needs (``libtvm_runtime.so`` + ``libtvm_ffi.so``), per architecture, cached.

* amd64: the installed apache-tvm / apache-tvm-ffi wheels' own libraries;
* arm64: the same versions' manylinux aarch64 wheels from PyPI (downloaded once, two files extracted);
* riscv64: no wheels exist; cross-built from the sources the x86 wheels ship (edgebit.runtime.tvm_runtime_build).
"""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from edgebit import provision
from edgebit.errors import EdgebitError
from edgebit.targets import Target

LIBRARIES = ("libtvm_runtime.so", "libtvm_ffi.so")
WHEELS = {"libtvm_runtime.so": "apache-tvm", "libtvm_ffi.so": "apache-tvm-ffi"}
WHEEL_PLATFORMS = {"arm64": "manylinux_2_28_aarch64"}


def _installed_library(name: str) -> Path:
    import tvm
    import tvm_ffi

    package = Path(tvm.__file__).parent if name == "libtvm_runtime.so" else Path(tvm_ffi.__file__).parent
    path = package / "lib" / name
    if not path.is_file():
        raise EdgebitError(f"{path}: missing from the installed wheel; reinstall with `make setup`")
    return path


def _from_wheels(debian_arch: str, destination: Path) -> None:
    platform = WHEEL_PLATFORMS[debian_arch]
    with tempfile.TemporaryDirectory() as tmp:
        requirements = [f"{WHEELS[n]}=={importlib.metadata.version(WHEELS[n])}" for n in LIBRARIES]
        result = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                                 "--python-version", "3.11", "--platform", platform, "-d", tmp, *requirements],
                                capture_output=True, text=True)
        if result.returncode != 0:
            detail = (result.stderr.strip().splitlines() or ["no output"])[-1]
            raise EdgebitError(f"downloading the {debian_arch} TVM runtime wheels failed: {detail}")
        for wheel in Path(tmp).glob("*.whl"):
            with zipfile.ZipFile(wheel) as archive:
                for member in archive.namelist():
                    if Path(member).name in LIBRARIES and "/lib/" in member:
                        (destination / Path(member).name).write_bytes(archive.read(member))


def runtime_libraries(target: Target) -> list[Path]:
    """Paths of the runtime libraries for ``target``'s architecture (fetched or built on first use)."""
    debian_arch = target.debian_arch
    if debian_arch == "amd64":
        return [_installed_library(name) for name in LIBRARIES]
    versions = "-".join(importlib.metadata.version(WHEELS[n]) for n in LIBRARIES)
    final = provision.cache_dir() / "tvm-runtime" / f"{debian_arch}-{versions}"

    def build(staging: Path) -> None:
        if debian_arch in WHEEL_PLATFORMS:
            _from_wheels(debian_arch, staging)
        elif target.cross_prefix:
            from edgebit.runtime.tvm_runtime_build import build_runtime

            build_runtime(target, staging)
        else:
            raise EdgebitError(f"no TVM runtime for architecture {debian_arch!r}")
        missing = [n for n in LIBRARIES if not (staging / n).is_file()]
        if missing:
            raise EdgebitError(f"the {debian_arch} TVM runtime lacks {', '.join(missing)}")

    root = provision.cached_build(final, build)
    return [root / name for name in LIBRARIES]
