"""C++ kernels linked into a TVM model library.

Some operators run faster as their C++ kernel (``ops/<op>/kernel.h``, the one ONNX Runtime and ExecuTorch run) than
as TensorIR: their TVM converter emits a PrimFunc that calls ``ops/<op>/tvm_adapter.cc`` through ``call_extern``,
records the adapter in an :class:`ExternKernels`, and :func:`compile_objects` builds each adapter for the target
(its compiler and ``cflags``, position-independent, cached by source) for ``export_library`` to link into
``model.so``. The adapters run on TVM's thread pool (``ops/common/tvm_parallel.h``), so TVM_NUM_THREADS still
sets the threads.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from edgebit.targets import Target
from edgebit.toolchain import provision
from edgebit.toolchain.compiler import compile_or_raise, require_compiler


# Architectures whose kernel.h files have vector paths (x86-64: AVX-512 VNNI / AVX2, arm64: NEON / sdot). Elsewhere
# (riscv64) the converters keep TensorIR / tensor-expression kernels, which LLVM vectorizes for RVV.
EXTERN_ARCHES = ("x86_64", "aarch64")


def runs_cpp_kernels(target: Target) -> bool:
    return target.triple.split("-")[0] in EXTERN_ARCHES


class ExternKernels:
    """The adapters (paths relative to ``ops/``) a model's converters called, in first-use order."""

    def __init__(self):
        self.sources: list[str] = []

    def use(self, source: str) -> None:
        if source not in self.sources:
            self.sources.append(source)


def compile_objects(extern: ExternKernels, target: Target) -> list[Path]:
    """One object file per adapter, built for ``target`` on first use."""
    import edgebit_ops

    if not extern.sources:
        return []
    require_compiler(target)
    objects = []
    for source in extern.sources:
        path = edgebit_ops.OPS_ROOT / source
        headers = (*sorted(path.parent.glob("*.h")), *edgebit_ops.kernel_headers())
        digest = hashlib.sha256(b"".join(p.read_bytes() for p in (path, *headers))
                                + target.cxx.encode() + " ".join(target.cflags).encode()).hexdigest()[:16]
        name = path.with_suffix(".o").name

        def build(staging: Path, path=path, name=name, source=source) -> None:
            compile_or_raise([target.cxx, "-std=c++17", "-O3", "-fPIC", "-fvisibility=hidden", *target.cflags,
                              f"-I{edgebit_ops.OPS_ROOT}", "-c", str(path), "-o", str(staging / name)],
                             f"{source} for {target.name}")

        folder = f"{path.parent.name}-{target.name}-{digest}"
        objects.append(provision.cached_build(provision.cache_dir() / "tvm-extern" / folder, build) / name)
    return objects
