"""edgebit's custom operators, one sub-package per operator (installed as ``edgebit_ops``).

Each operator folder holds SPEC.md (the contract), the PyTorch reference registered with torch.library, its TVM
kernels and, for the operators in :data:`KERNEL_OPS`, its C++ kernel once (``kernel.h``: plain functions with
AVX2 / AVX-512 VNNI / NEON / sdot paths and a generic fallback) with a thin adapter per runtime
(``ort_adapter.cc`` for ONNX Runtime, ``executorch_adapter.cpp`` for ExecuTorch). ``common/`` holds what the kernels
and adapters share (``kernel_common.h``, ``ort_ops.h`` + ``ort_register.cc``, ``executorch_ops.h``). Sources
include each other from this folder (``-I`` it): ``#include "ternary_matmul/kernel.h"``.
"""

from pathlib import Path

OPS_ROOT = Path(__file__).parent
KERNEL_OPS = ("ternary_matmul", "binary_matmul", "selective_scan", "int8_matmul", "q4_matmul")


def kernel_headers() -> list[Path]:
    """Every header the runtime adapters compile against (each kernel.h, common/*.h): for build cache digests."""
    return [OPS_ROOT / op / "kernel.h" for op in KERNEL_OPS] + sorted((OPS_ROOT / "common").glob("*.h"))
