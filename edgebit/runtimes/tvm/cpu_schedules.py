"""Schedules for the TensorIR kernels TVM makes from a step's plain operators (norms, RoPE, activations, casts), CPU.

TVM 0.27's CPU pipeline lowers them as written: one thread, scalar loops. In a 128-token prefill of the 2B-4T shape
they took ~110 ms of ~1.2 s at 2 threads, as at 1: the part of a prefill that did not scale. Two rules, applied after
fusion (edgebit's own kernels are scheduled already, by hand):

- TVM's ``dlight.cpu.Reduction`` for the norms: one row per task, the injective steps vectorized. An RMSNorm of
  128 x 2560 floats: 400 -> 218 us at 2 threads (Zen 4); 1 token: 4.8 -> 6.5 us, a thread-pool launch.
- ``Injective`` below for the elementwise kernels: every block inlined into the last, its outer loops fused into one
  parallel loop, the innermost vectorized.

Six layers of the 2B-4T shape, 128-token prefill (benchmarks/decode_breakdown.py --tokens 128): these kernels took
26.4 -> 16.4 ms at 2 threads, 31.0 -> 29.4 at 1. In the whole model the change is under this host's noise: paired
runs of 30 layers at 2 threads gave prefill 98.1 -> 101.2 and 105.7 -> 104.1 tok/s, decode 33.3 -> 29.7 and
29.2 -> 33.3 tok/s (a decode step's kernels now start a thread-pool launch each: ~1.7 us at 2 threads).
"""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


def injective_rule():
    """A dlight rule: an elementwise kernel (every block spatial) as one parallel loop over vectorized rows."""
    from tvm import s_tir, tirx
    from tvm.s_tir.dlight.analysis import normalize_prim_func
    from tvm.s_tir.dlight.cpu import Reduction
    from tvm.s_tir.dlight.cpu.base import CPUScheduleRule
    from tvm.target.codegen import llvm_get_vector_width

    class Injective(CPUScheduleRule):
        def apply(self, func, target, _tunable):
            if not isinstance(func, tirx.PrimFunc) or not self.is_target_available(target):
                return None
            sch = s_tir.Schedule(func)
            blocks = normalize_prim_func(sch)
            if not blocks or not all(block.is_injective() for block in blocks):
                return None
            try:
                for block in blocks[:-1]:
                    sch.compute_inline(block.block_rv)
            except Exception:  # a block TVM cannot inline (several consumers, say): left as TVM lowers it
                return None
            last = blocks[-1].block_rv
            loops = sch.get_loops(last)
            if len(loops) < 2:
                return None
            sch.parallel(sch.fuse(*loops[:-1]))
            write = sch.get(last).writes
            bits = write[0].source.dtype.bits if write else 32
            vector_bits = llvm_get_vector_width(target)
            lanes = max((vector_bits if vector_bits > 0 else 128) // bits, 2)  # as dlight's Reduction sizes them
            Reduction._vectorize_inner(sch, last, lanes)  # the split dlight's Reduction vectorizes its rows with
            return sch

    return Injective()


def guarded(rule):
    """``rule``, except that a kernel it fails on is left as TVM lowers it (and logged) instead of failing the build:
    a schedule is an optimization, and a step graph can hold kernels no rule foresaw (Bi-Mamba's unfused step)."""
    from tvm.s_tir.dlight.cpu.base import CPUScheduleRule

    class Guarded(CPUScheduleRule):
        def apply(self, func, target, tunable):
            try:
                return rule.apply(func, target, tunable)
            except Exception as error:  # noqa: BLE001 -- any TVM error: this kernel stays unscheduled
                logger.info("%s left unscheduled: %s", type(rule).__name__, str(error).strip().splitlines()[-1:])
                return None

    return Guarded()


def schedule_plain_kernels():
    """The pass: the rules applied to every kernel not yet scheduled (edgebit's own are marked scheduled), for the
    target ``tvm.compile`` builds for. riscv64 keeps TVM's lowering: for a vector loop with a symbolic tail on RVV,
    TVM 0.27 emits an llvm.get.active.lane.mask call with i64 bounds where LLVM declares i32, and LLVM rejects it."""
    import tvm
    from tvm.s_tir import dlight

    apply_rules = dlight.ApplyDefaultSchedule(guarded(dlight.cpu.Reduction()), guarded(injective_rule()))

    @tvm.transform.module_pass(opt_level=0, name="edgebit.SchedulePlainKernels")
    def schedule(mod, _ctx):
        target = tvm.target.Target.current(allow_none=True)
        if target is not None and "riscv" in str(target.attrs.get("mtriple", "")):
            return mod
        return apply_rules(mod)

    return schedule
