"""Cross-builds libtvm_ffi.so + libtvm_runtime.so for an architecture that has no TVM wheel (riscv64), from the
sources the installed x86_64 wheels ship, with the CMake project in ``tvm_runtime/``. Takes a few minutes on two
cores; the result is cached by edgebit.runtimes.tvm.runtime_libs."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from edgebit.toolchain.doctor import missing_tool_message
from edgebit.errors import EdgebitError
from edgebit.targets import Target

PROJECT = Path(__file__).parent / "tvm_runtime"
OUTPUTS = ("libtvm_ffi.so", "libtvm_runtime.so")


def _toolchain_file(target: Target, directory: Path) -> Path:
    processor = target.triple.split("-")[0]
    path = directory / "toolchain.cmake"
    path.write_text(f"""set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR {processor})
set(CMAKE_C_COMPILER {target.cross_prefix}gcc)
set(CMAKE_CXX_COMPILER {target.cross_prefix}g++)
set(CMAKE_FIND_ROOT_PATH /usr/{target.triple})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
""")
    return path


def build_runtime(target: Target, destination: Path) -> None:
    """Build the runtime libraries for ``target`` into ``destination``."""
    import tvm

    for tool in ("cmake", "make", target.cxx):
        if shutil.which(tool) is None:
            raise EdgebitError(missing_tool_message(tool))
    site = Path(tvm.__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory(prefix="edgebit-tvm-runtime-") as work:
        build = Path(work) / "build"
        configure = ["cmake", "-S", str(PROJECT), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release",
                     f"-DTVM_SITE={site}", f"-DCMAKE_TOOLCHAIN_FILE={_toolchain_file(target, Path(work))}"]
        jobs = str(max(1, len(os.sched_getaffinity(0))))
        for step in (configure, ["cmake", "--build", str(build), "-j", jobs]):
            result = subprocess.run(step, capture_output=True, text=True)
            if result.returncode != 0:
                lines = [line for line in (result.stdout + result.stderr).splitlines() if "rror" in line]
                raise EdgebitError(f"building the TVM runtime for {target.name} failed: "
                                   f"{(lines or ['see cmake output'])[-1].strip()}")
        for name in OUTPUTS:
            shutil.copy2(build / name, destination / name)
