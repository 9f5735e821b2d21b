"""Runtimes, one folder each (``edgebit/runtimes/<name>/``), behind one interface (:class:`base.Runtime`).

Adding a runtime: a folder with a :class:`~edgebit.runtimes.base.Runtime` subclass (export, build, runner source)
and one line in :data:`RUNTIME_CLASSES`. The CLI's ``--runtime`` choices, the support matrix and bundle ordering
all come from this registry.
"""

from __future__ import annotations

import importlib
from functools import cache

from edgebit.errors import EdgebitError

# name -> "module:class", in the order bundles list them (the first is the default of run and generate).
RUNTIME_CLASSES = {
    "tvm": "edgebit.runtimes.tvm.backend:TvmRuntime",
    "onnx-custom": "edgebit.runtimes.onnx.backend:OnnxCustomRuntime",
    "onnx-portable": "edgebit.runtimes.onnx.backend:OnnxPortableRuntime",
    "executorch": "edgebit.runtimes.executorch.backend:ExecuTorchRuntime",
}
RUNTIMES = tuple(RUNTIME_CLASSES)
RUNTIME_GROUPS = {"onnx": ("onnx-custom", "onnx-portable"), "all": RUNTIMES}


@cache
def runtime(name: str):
    """The Runtime called ``name`` (imported on first use: each pulls in its toolchain)."""
    if name not in RUNTIME_CLASSES:
        raise EdgebitError(f"unknown runtime {name!r}; choose from {', '.join([*RUNTIMES, *RUNTIME_GROUPS])}")
    module, _, cls = RUNTIME_CLASSES[name].partition(":")
    return getattr(importlib.import_module(module), cls)()


def resolve_runtimes(names: list[str]) -> list[str]:
    """Runtime names with groups (``onnx``, ``all``) expanded, in registry order, without duplicates."""
    chosen: set[str] = set()
    for name in names:
        if name in RUNTIME_GROUPS:
            chosen.update(RUNTIME_GROUPS[name])
        elif name in RUNTIME_CLASSES:
            chosen.add(name)
        else:
            known = ", ".join([*RUNTIMES, *RUNTIME_GROUPS])
            raise EdgebitError(f"unknown runtime {name!r}; choose from {known}")
    return [r for r in RUNTIMES if r in chosen]


def unsupported_reason(name: str, target, family: str) -> str | None:
    """Why runtime ``name`` cannot serve ``family`` models on ``target`` (None when it can)."""
    return runtime(name).unsupported_reason(target, family)


def choices_help() -> str:
    """The --runtime help text, from the registry."""
    return f"{', '.join(RUNTIMES)}, or a group: " + ", ".join(
        f"{group} ({'every runtime' if members == RUNTIMES else ' + '.join(members)})"
        for group, members in RUNTIME_GROUPS.items())
