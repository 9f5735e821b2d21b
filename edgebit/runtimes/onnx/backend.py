"""The ONNX Runtime backends: the model's step graph exported to ONNX (edgebit.runtimes.onnx.export) and run on the
device by a small C++ runner linked against the target's libonnxruntime.so (edgebit.runtimes.onnx.build).

* ``onnx-custom``: TernaryMatMul / BinaryMatMul / SelectiveScan nodes in the ``edgebit`` domain; the bundle ships
  ``lib/libedgebit_ort_ops.so``, which applications register with ``register_custom_ops_library``.
* ``onnx-portable``: stock ONNX Runtime operators only (MatMulNBits bits=2, standard ops for the scan); for BitNet
  the directory is also an ONNX Runtime GenAI model folder (edgebit.runtimes.onnx.genai).
"""

from __future__ import annotations

from pathlib import Path

from edgebit.bundle.layout import MODEL_CONF, RUNNER
from edgebit.errors import EdgebitError
from edgebit.models.step_graph import step_graph
from edgebit.runtimes.base import Runtime
from edgebit.runtimes.onnx import build as ort_build
from edgebit.targets import Target

MODEL_FILE = "model.onnx"


class OnnxRuntime(Runtime):
    """ONNX Runtime with a C++ runner; subclasses choose the ONNX form of edgebit's operators."""

    model_file = MODEL_FILE
    form: str  # "custom" or "portable" (edgebit.runtimes.onnx.export)

    def unsupported_reason(self, target: Target, family: str) -> str | None:
        return ort_build.unsupported_reason(target)

    def version(self) -> str:
        return f"onnxruntime {ort_build.ort_version()}"

    def build(self, model, target: Target, max_seq_len: int, work: Path) -> dict[str, Path]:
        """Export ``model`` in this runtime's ONNX form into ``work`` and gather the runtime directory's files."""
        from edgebit.runtimes.onnx.export import export_onnx

        reason = self.unsupported_reason(target, model.family)
        if reason:
            raise EdgebitError(reason)
        work.mkdir(parents=True, exist_ok=True)
        export_onnx(model, self.form, max_seq_len, work / MODEL_FILE)
        (work / MODEL_CONF).write_text(step_graph(model, max_seq_len).runner_conf())
        files = {MODEL_FILE: work / MODEL_FILE, MODEL_CONF: work / MODEL_CONF,
                 RUNNER: ort_build.build_runner(target), "lib/" + ort_build.ORT_SONAME: ort_build.ort_library(target)}
        for external in sorted(work.glob(MODEL_FILE + ".*")):  # weights saved as ONNX external data, if any
            files[external.name] = external
        return files

    def operator_runner(self, op: str, target: Target):
        """The layer calling ``op`` exported in this runtime's ONNX form as bundles are, run by onnxruntime in this
        process (with edgebit's custom-op library for the custom form; host targets only)."""
        import contextlib

        import onnxruntime as ort

        from edgebit.runtimes.base import operator_module
        from edgebit.runtimes.onnx.export import onnx_program
        from edgebit.runtimes.onnx.operators import portable_operators, register_schemas

        if not target.is_host:
            raise ValueError(f"operator runners run in this process: {target.name} is not the host")
        options = ort.SessionOptions()
        if self.form == "custom":
            options.register_custom_ops_library(str(ort_build.build_ops_library(target)))
            register_schemas()

        def run(*args):
            module, inputs = operator_module(op, *args)
            names = [f"input_{i}" for i in range(len(inputs))]
            with portable_operators(module) if self.form == "portable" else contextlib.nullcontext():
                program = onnx_program(module, inputs, self.form, input_names=names)
            session = ort.InferenceSession(program.model_proto.SerializeToString(), options,
                                           providers=["CPUExecutionProvider"])
            return tuple(session.run(None, {name: t.numpy() for name, t in zip(names, inputs)}))

        return run


class OnnxCustomRuntime(OnnxRuntime):
    """edgebit's operators as ``edgebit``-domain nodes, run by lib/libedgebit_ort_ops.so."""

    name = "onnx-custom"
    form = "custom"

    def build(self, model, target: Target, max_seq_len: int, work: Path) -> dict[str, Path]:
        files = super().build(model, target, max_seq_len, work)
        files["lib/" + ort_build.OPS_LIBRARY] = ort_build.build_ops_library(target)
        return files


class OnnxPortableRuntime(OnnxRuntime):
    """Stock ONNX Runtime operators only (MatMulNBits bits=2, an ONNX Scan): ORT Mobile runs it as is."""

    name = "onnx-portable"
    form = "portable"

    def build(self, model, target: Target, max_seq_len: int, work: Path) -> dict[str, Path]:
        """The runner's files, and for families with a GenAI decoder (BitNet) what makes the directory an ONNX
        Runtime GenAI model folder too (edgebit.runtimes.onnx.genai)."""
        from edgebit.runtimes.onnx import genai

        files = super().build(model, target, max_seq_len, work)
        if genai.has_genai_decoder(model):
            files.update(genai.export_genai(model, max_seq_len, work))
        return files

    def unsupported_reason(self, target: Target, family: str) -> str | None:
        reason = super().unsupported_reason(target, family)
        if reason and target.debian_arch == "riscv64":
            reason += "; the portable form also needs MatMulNBits bits=2 (ORT >= 1.26), which ORT 1.23 lacks"
        return reason
