"""Builds the ExecuTorch side of a bundle for a target: the edgebit kernel library (``ops/*/executorch_adapter.cpp``
over each operator's ``kernel.h``, registered with ExecuTorch's operator registry, compiled with the target's
``cflags`` like the ONNX Runtime ops) and the device runner (``executorch_runner.cpp``), both against the
executorch wheel, cached by sources and toolchain.

* amd64: the installed executorch wheel's headers and ``lib/*.so``;
* arm64: the same version's manylinux aarch64 wheel from PyPI (downloaded once, its runtime libraries extracted);
  the headers are architecture independent, so the installed wheel's serve;
* riscv64: no ExecuTorch wheel exists for it (:data:`NO_RISCV64`).

A plain compiler command line is used rather than CMake: the wheel's CMake package skips its imported targets on
CMake < 3.28 (Debian 12 has 3.25), and the flags it would carry are few (include dirs, two definitions).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import subprocess
from pathlib import Path

from edgebit.toolchain import provision
from edgebit.toolchain.compiler import compile_or_raise, require_compiler
from edgebit.toolchain.sanitize import sanitizer_flags
from edgebit.bundle.layout import RUNNER_NAME
from edgebit.errors import EdgebitError
from edgebit.runtimes.base import DRIVER_HEADER
from edgebit.targets import Target

RUNNER_SOURCE = Path(__file__).parent / "runner.cpp"
KERNEL_LIBRARY = "libedgebit_executorch_ops.so"
# What a .pte of ours needs at run time: the runtime (Module API, operator registry), the CPU kernels for the
# dense ops XNNPACK does not take, the XNNPACK delegate and the thread pool both of them use.
RUNTIME_LIBRARIES = ("libexecutorch.so", "libexecutorch_kernels_optimized.so", "libexecutorch_backend_xnnpack.so",
                     "libexecutorch_threadpool.so")
NO_RISCV64 = ("ExecuTorch publishes no riscv64 build (PyPI has executorch wheels for x86_64 and aarch64 only), "
              "so there is no runtime to link against; use --runtime tvm or onnx for riscv64")
DEFINITIONS = ("C10_USING_CUSTOM_GENERATED_MACROS", "ET_EVENT_TRACER_ENABLED", "ET_USE_THREADPOOL")


def executorch_version() -> str:
    return importlib.metadata.version("executorch")


def _package_root() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("executorch")  # a namespace package: no __file__
    if spec is None or not spec.submodule_search_locations:
        raise EdgebitError("the executorch package is not installed; reinstall with `make setup`")
    return Path(list(spec.submodule_search_locations)[0])


def include_dirs() -> list[Path]:
    root = _package_root() / "include"
    return [root, root / "executorch" / "runtime" / "core" / "portable_type" / "c10"]


def kernel_sources() -> list[Path]:
    import edgebit_ops

    return [edgebit_ops.OPS_ROOT / op / "executorch_adapter.cpp" for op in edgebit_ops.KERNEL_OPS]


def unsupported_reason(target: Target) -> str | None:
    if target.debian_arch == "amd64" or target.debian_arch in provision.WHEEL_PLATFORMS:
        return None
    if target.debian_arch == "riscv64":
        return NO_RISCV64
    return f"ExecuTorch publishes no build for architecture {target.debian_arch!r}"


def _from_wheel(debian_arch: str, destination: Path) -> None:
    provision.extract_from_wheels(
        [f"executorch=={executorch_version()}"], debian_arch,
        lambda member: (Path(member).name if member.startswith("executorch/lib/")
                        and Path(member).name in RUNTIME_LIBRARIES else None),
        destination)


def runtime_libraries(target: Target) -> list[Path]:
    """The ExecuTorch runtime libraries for ``target``'s architecture (fetched on first use)."""
    reason = unsupported_reason(target)
    if reason:
        raise EdgebitError(reason)
    if target.debian_arch == "amd64":
        root = _package_root() / "lib"
    else:
        root = provision.cached_build(provision.cache_dir() / "executorch-runtime" /
                                      f"{target.debian_arch}-{executorch_version()}",
                                      lambda staging: _from_wheel(target.debian_arch, staging))
    paths = [root / name for name in RUNTIME_LIBRARIES]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise EdgebitError(f"the {target.debian_arch} executorch runtime lacks {', '.join(missing)} (in {root})")
    return paths


def build(target: Target) -> Path:
    """A directory with ``bin/edgebit-runner`` and ``lib/libedgebit_executorch_ops.so`` for ``target``.

    The runner finds the kernel library and the ExecuTorch libraries in ``$ORIGIN/../lib``.
    """
    require_compiler(target)
    import edgebit_ops

    libraries = runtime_libraries(target)
    sources = kernel_sources()
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in [*sources, *edgebit_ops.kernel_headers(), RUNNER_SOURCE,
                                                              DRIVER_HEADER])
                            + target.cxx.encode() + " ".join([*target.cflags, *sanitizer_flags(target)]).encode()
                            + executorch_version().encode()
                            + subprocess.run([target.cxx, "--version"], capture_output=True).stdout
                            + b"".join(p.read_bytes()[:4096] for p in libraries)).hexdigest()[:16]
    lib_dirs = sorted({f"-L{p.parent}" for p in libraries})
    common = [target.cxx, "-std=c++17", "-O3", *sanitizer_flags(target), *(f"-I{d}" for d in include_dirs()),
              *(f"-D{d}" for d in DEFINITIONS)]

    def run_build(staging: Path) -> None:
        (staging / "bin").mkdir()
        (staging / "lib").mkdir()
        kernels = staging / "lib" / KERNEL_LIBRARY
        compile_or_raise([*common, *target.cflags, f"-I{edgebit_ops.OPS_ROOT}", "-fPIC", "-shared", *map(str, sources),
                  "-o", str(kernels), *lib_dirs, "-lexecutorch_threadpool", "-lexecutorch", "-Wl,-rpath,$ORIGIN"],
                 "the ExecuTorch kernels")
        # The kernel and delegate libraries register themselves from static initializers and export nothing the
        # runner calls: --no-as-needed keeps them in its dependencies.
        compile_or_raise([*common, f"-I{DRIVER_HEADER.parent}", str(RUNNER_SOURCE), "-o", str(staging / "bin" / RUNNER_NAME), *lib_dirs,
                  f"-L{staging / 'lib'}", "-Wl,--no-as-needed", "-ledgebit_executorch_ops",
                  "-lexecutorch_kernels_optimized", "-lexecutorch_backend_xnnpack", "-lexecutorch_threadpool",
                  "-lexecutorch", "-Wl,--as-needed", "-Wl,-rpath,$ORIGIN/../lib"], "the ExecuTorch runner")

    return provision.cached_build(provision.cache_dir() / "executorch-build" / f"{target.name}-{digest}", run_build)
