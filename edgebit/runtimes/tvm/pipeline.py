"""The Relax pipeline edgebit compiles a model's step with: TVM's default build pipeline plus operator fusion.

``tvm.compile``'s default pipeline for CPU targets lowers every Relax operator to a kernel of its own: an RMSNorm
became six (power, mean, add, sqrt, divide, multiply), each with its own output buffer and VM call, ~900 small kernels
a decode step of the 2B-4T shape. Fusing them (``FuseOps`` + ``FuseTIR``, what TVM's target pipelines do) makes an
RMSNorm two kernels and RoPE one.

edgebit's own kernels (the PrimFuncs its converters add: ``call_extern`` into ops/<op>/kernel.h, or hand-written
tensor expressions) are marked opaque and scheduled first, so fusion never merges them with their neighbours (their
bodies are calls TVM cannot inline, and FuseTIR refuses a group that passes one tensor to such a call under two
names), and the schedule rules applied after fusion (cpu_schedules) leave them as written.
Where TVM's fusion still fails (Bi-Mamba's step: a symbolic shape with an ``if_then_else`` that FuseOps cannot
type), the step compiles unfused, as before.
"""

from __future__ import annotations

import logging

from edgebit.runtimes.tvm.cpu_schedules import schedule_plain_kernels

logger = logging.getLogger(__name__)

OPAQUE = 8  # tvm.relax's OpPatternKind kOpaque: never fused


def build_pipeline():
    """The pass TVM's ``tvm.compile(relax_pipeline=...)`` takes: legalize, fuse, then TVM's default build steps."""
    import tvm
    from tvm import relax
    from tvm.relax import backend, transform

    @tvm.transform.module_pass(opt_level=0, name="edgebit.FuseOperators")
    def pipeline(mod: tvm.ir.IRModule, _ctx) -> tvm.ir.IRModule:
        own_kernels = {gv.name_hint for gv, func in mod.functions.items() if isinstance(func, tvm.tirx.PrimFunc)}

        @tvm.transform.module_pass(opt_level=0, name="edgebit.MarkOwnKernelsOpaque")
        def mark_own_kernels_opaque(mod: tvm.ir.IRModule, _ctx) -> tvm.ir.IRModule:
            for gv, func in list(mod.functions.items()):
                if gv.name_hint in own_kernels and isinstance(func, tvm.tirx.PrimFunc):
                    mod[gv] = func.with_attr("op_pattern", OPAQUE).with_attr("tirx.is_scheduled", True)
            return mod

        legalized = tvm.transform.Sequential([
            backend.DispatchSampling(), backend.DispatchSortScan(), transform.LegalizeOps(),
            transform.AnnotateTIROpPattern(), mark_own_kernels_opaque])(mod)
        try:
            fused = tvm.transform.Sequential([transform.FuseOps(), transform.FuseTIR()])(legalized)
        except tvm.error.InternalError as error:  # an optimization: a graph TVM cannot fuse runs unfused
            logger.info("operator fusion skipped (TVM: %s)", str(error).strip().splitlines()[-1])
            fused = legalized
        fused = schedule_plain_kernels()(fused)  # TVM's own kernels parallel and vectorized (cpu_schedules)
        return relax.pipeline.default_build_pipeline()(fused)  # lowering to the VM: what tvm.compile does by default

    return pipeline
