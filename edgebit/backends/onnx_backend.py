"""The ONNX Runtime backends: the model's step graph exported to ONNX (edgebit.backends.onnx_export) and run on the
device by a small C++ runner linked against the target's libonnxruntime.so (edgebit.runtime.ort_build).

* ``onnx-custom``: TernaryMatMul / BinaryMatMul / SelectiveScan nodes in the ``edgebit`` domain; the bundle ships
  ``lib/libedgebit_ort_ops.so``, which applications register with ``register_custom_ops_library``.
* ``onnx-portable``: stock ONNX Runtime operators only (MatMulNBits bits=2, standard ops for the scan).
"""

from __future__ import annotations

from pathlib import Path

from edgebit.errors import EdgebitError
from edgebit.runtime import ort_build
from edgebit.step_graph import step_graph
from edgebit.targets import Target

RUNTIMES = ("onnx-custom", "onnx-portable")
FORMS = {"onnx-custom": "custom", "onnx-portable": "portable"}
MODEL_FILE = "model.onnx"


def unsupported_reason(runtime: str, target: Target, family: str) -> str | None:
    if runtime not in RUNTIMES:
        return f"{runtime} is not an ONNX Runtime backend"
    reason = ort_build.unsupported_reason(target)
    if reason and runtime == "onnx-portable" and target.debian_arch == "riscv64":
        reason += "; the portable form also needs MatMulNBits bits=2 (ORT >= 1.26), which ORT 1.23 lacks"
    return reason


def runtime_version(runtime: str) -> str:
    return f"onnxruntime {ort_build.ort_version()}"


def build_runtime(runtime: str, model, target: Target, max_seq_len: int, work: Path) -> dict[str, Path]:
    """Export ``model`` in the runtime's ONNX form into ``work`` and gather the runtime directory's files."""
    from edgebit.backends.onnx_export import export_onnx

    reason = unsupported_reason(runtime, target, model.family)
    if reason:
        raise EdgebitError(reason)
    work.mkdir(parents=True, exist_ok=True)
    export_onnx(model, FORMS[runtime], max_seq_len, work / MODEL_FILE)
    (work / "model.conf").write_text(step_graph(model, max_seq_len).runner_conf())
    files = {MODEL_FILE: work / MODEL_FILE, "model.conf": work / "model.conf",
             "bin/" + ort_build.RUNNER_NAME: ort_build.build_runner(target),
             "lib/" + ort_build.ORT_SONAME: ort_build.ort_library(target)}
    for external in sorted(work.glob(MODEL_FILE + ".*")):  # weights saved as ONNX external data, if any
        files[external.name] = external
    if runtime == "onnx-custom":
        files["lib/" + ort_build.OPS_LIBRARY] = ort_build.build_ops_library(target)
    return files
