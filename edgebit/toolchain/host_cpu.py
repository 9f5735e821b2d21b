"""The host CPU as a TVM target: a named ``mcpu`` from /proc/cpuinfo (``-mcpu=native`` silently builds generic code
in TVM 0.27's LLVM) and the dot-product ISA the ternary kernel may use."""

from __future__ import annotations

from pathlib import Path


def cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def host_tvm_cpu() -> tuple[str, tuple[str, ...]]:
    """(mcpu, features) for the machine this runs on."""
    flags = cpu_flags()
    vendor = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    if "avx512_vnni" in flags:
        return ("znver4" if "AuthenticAMD" in vendor else "icelake-server"), ("avx2", "avx512vnni")
    if "avx2" in flags:
        return "haswell", ("avx2",)
    return "x86-64", ()


def native_host_target():
    """The x86_64 target tuned for this machine (benchmarks): its TVM mcpu and features, -march=native for the C++ kernels"""
    import dataclasses

    from edgebit.targets import resolve_target

    mcpu, features = host_tvm_cpu()
    base = resolve_target("x86_64")
    return dataclasses.replace(base, features=features, tvm={**base.tvm, "mcpu": mcpu}, cflags=("-march=native",))
