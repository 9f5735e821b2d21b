"""Builds what the ONNX Runtime bundles ship, per target, cached outside the repository: the ``edgebit`` custom-op
library (``libedgebit_ort_ops.so``) and the device runner, both compiled with the target's (cross) g++.

* ORT's C/C++ headers are in no wheel: Debian trixie's ``libonnxruntime-dev`` is downloaded (private apt state,
  edgebit.toolchain.provision) and only its headers are kept in the cache. Built against that C API version, the library and
  the runner work with any newer ORT (the C API only grows).
* ``libonnxruntime.so`` (linked by the runner, shipped in the bundle): amd64 from the installed onnxruntime wheel,
  arm64 from the same version's manylinux aarch64 wheel (downloaded once).
* riscv64 has no onnxruntime wheel (see ``unsupported_reason``).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import shutil
import subprocess
import tempfile
from pathlib import Path

import edgebit_ops
from edgebit.toolchain import provision
from edgebit.toolchain.compiler import compile_or_raise, require_compiler
from edgebit.toolchain.sanitize import sanitizer_flags
from edgebit.bundle.layout import RUNNER_NAME
from edgebit.errors import EdgebitError
from edgebit.runtimes.base import DRIVER_HEADER
from edgebit.targets import Target

HEADERS_SUITE = "trixie"
HEADERS_PACKAGE = "libonnxruntime-dev"
ORT_SONAME = "libonnxruntime.so.1"
OPS_LIBRARY = "libedgebit_ort_ops.so"

RUNTIME_DIR = Path(__file__).parent
OPS_ROOT = Path(edgebit_ops.__file__).parent  # ops/ in the repository, edgebit_ops when installed
# One adapter per operator over its kernel.h, plus the library's entry point (RegisterCustomOps).
OPS_SOURCES = (*(OPS_ROOT / op / "ort_adapter.cc" for op in edgebit_ops.KERNEL_OPS),
               OPS_ROOT / "common" / "ort_register.cc")
RUNNER_SOURCES = (RUNTIME_DIR / "runner.cc", DRIVER_HEADER)


def ort_version() -> str:
    return importlib.metadata.version("onnxruntime")


def unsupported_reason(target: Target) -> str | None:
    """Why ONNX Runtime bundles cannot be built for ``target`` (None when they can)."""
    if target.debian_arch not in ("amd64", *provision.WHEEL_PLATFORMS):
        return (f"no {target.debian_arch} onnxruntime wheel on PyPI to ship in the bundle (Debian sid's riscv64 "
                f"ORT 1.23 and its ~190 MB of dependencies are not packaged by edgebit yet)")
    return None


def headers() -> Path:
    """Include directory with onnxruntime_cxx_api.h (from Debian's libonnxruntime-dev, fetched once)."""
    def build(staging: Path) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            debs = provision.download_debs(HEADERS_SUITE, "amd64", (HEADERS_PACKAGE,), Path(tmp) / "debs")
            unpacked = Path(tmp) / "root"
            for deb in debs:
                result = subprocess.run(["dpkg-deb", "-x", str(deb), str(unpacked)], capture_output=True, text=True)
                if result.returncode != 0:
                    raise EdgebitError(f"unpacking {deb.name} failed: {result.stderr.strip()}")
            source = unpacked / "usr" / "include" / "onnxruntime"
            if not (source / "onnxruntime_cxx_api.h").is_file():
                raise EdgebitError(f"{HEADERS_PACKAGE} from {HEADERS_SUITE} has no onnxruntime_cxx_api.h")
            shutil.copytree(source, staging / "include")

    return provision.cached_build(provision.cache_dir() / "onnxruntime-headers" / HEADERS_SUITE, build) / "include"


def _from_wheel(debian_arch: str, destination: Path) -> None:
    provision.extract_from_wheels(
        [f"onnxruntime=={ort_version()}"], debian_arch,
        lambda member: ORT_SONAME if member.startswith("onnxruntime/capi/libonnxruntime.so.") else None, destination)
    if not (destination / ORT_SONAME).is_file():
        raise EdgebitError(f"the {debian_arch} onnxruntime wheel has no libonnxruntime.so")


def ort_library(target: Target) -> Path:
    """The target's ``libonnxruntime.so.1`` (soname name; the runner needs it in the bundle's lib/)."""
    reason = unsupported_reason(target)
    if reason:
        raise EdgebitError(reason)
    if target.debian_arch == "amd64":
        import onnxruntime

        found = sorted((Path(onnxruntime.__file__).parent / "capi").glob("libonnxruntime.so.*"))
        if not found:
            raise EdgebitError("the installed onnxruntime wheel has no libonnxruntime.so; reinstall it")
        return found[0]
    final = provision.cache_dir() / "onnxruntime" / f"{target.debian_arch}-{ort_version()}"
    return provision.cached_build(final, lambda staging: _from_wheel(target.debian_arch, staging)) / ORT_SONAME


def _digest(target: Target, files, extra: bytes = b"") -> str:
    data = (b"".join(p.read_bytes() for p in files) + target.cxx.encode() + " ".join(target.cflags).encode()
            + " ".join(sanitizer_flags(target)).encode())
    return hashlib.sha256(data + extra).hexdigest()[:16]


def _compile(target: Target, command: list[str], what: str) -> None:
    compile_or_raise([target.cxx, *sanitizer_flags(target), *command], f"{what} for {target.name}")


def build_ops_library(target: Target) -> Path:
    """``libedgebit_ort_ops.so`` for ``target`` (the ``edgebit`` custom-op domain), built on first use."""
    require_compiler(target)
    include = headers()
    digest = _digest(target, (*OPS_SOURCES, *edgebit_ops.kernel_headers()), (include / "onnxruntime_c_api.h").read_bytes()[:8192])

    def build(staging: Path) -> None:
        _compile(target, ["-std=c++17", "-O3", "-fPIC", "-shared", "-fvisibility=hidden", "-DORT_API_MANUAL_INIT",
                          *target.cflags, f"-I{include}", f"-I{OPS_ROOT}", *map(str, OPS_SOURCES),
                          "-o", str(staging / OPS_LIBRARY)], "the ONNX Runtime custom-op library")

    return provision.cached_build(provision.cache_dir() / "ort-ops" / f"{target.name}-{digest}", build) / OPS_LIBRARY


def build_runner(target: Target) -> Path:
    """The ONNX Runtime device runner for ``target``, linked against its libonnxruntime.so.1 (at $ORIGIN/../lib)."""
    require_compiler(target)
    include = headers()
    library = ort_library(target)
    with library.open("rb") as head:
        digest = _digest(target, RUNNER_SOURCES, head.read(4096) + ort_version().encode())

    def build(staging: Path) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / ORT_SONAME).symlink_to(library)  # link by soname whatever the wheel calls the file
            _compile(target, ["-std=c++17", "-O2", f"-I{include}", f"-I{DRIVER_HEADER.parent}", str(RUNNER_SOURCES[0]),
                              "-o", str(staging / RUNNER_NAME), str(Path(tmp) / ORT_SONAME),
                              "-Wl,-rpath,$ORIGIN/../lib"], "the ONNX Runtime device runner")

    return provision.cached_build(provision.cache_dir() / "ort-runner" / f"{target.name}-{digest}", build) / RUNNER_NAME
