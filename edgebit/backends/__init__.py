"""Runtime backends: each one turns a model into the files of one runtime directory of a bundle.

A bundle holds one directory per runtime (``runtimes/<name>/``) with a device runner that speaks the same
protocol (edgebit/runtime/runner_driver.h), so run, validate, generate and bench work the same for all of them.
A backend module exposes::

    RUNTIMES: tuple[str, ...]
    unsupported_reason(runtime, target, family) -> str | None
    runtime_version(runtime) -> str
    build_runtime(runtime, model, target, max_seq_len, work) -> {path in the runtime directory: host file}
"""

from __future__ import annotations

import importlib
from types import ModuleType

from edgebit.errors import EdgebitError

BACKEND_MODULES = {
    "tvm": "edgebit.backends.tvm_backend",
    "onnx-custom": "edgebit.backends.onnx_backend",
    "onnx-portable": "edgebit.backends.onnx_backend",
    "executorch": "edgebit.backends.executorch_backend",
}
RUNTIMES = tuple(BACKEND_MODULES)
RUNTIME_GROUPS = {"onnx": ("onnx-custom", "onnx-portable"), "all": RUNTIMES}
FAMILIES = ("bitnet", "bimamba")


def backend(runtime: str) -> ModuleType:
    return importlib.import_module(BACKEND_MODULES[runtime])


def resolve_runtimes(names: list[str]) -> list[str]:
    """Runtime names with groups (``onnx``, ``all``) expanded, in registry order, without duplicates."""
    chosen: set[str] = set()
    for name in names:
        if name in RUNTIME_GROUPS:
            chosen.update(RUNTIME_GROUPS[name])
        elif name in BACKEND_MODULES:
            chosen.add(name)
        else:
            known = ", ".join([*RUNTIMES, *RUNTIME_GROUPS])
            raise EdgebitError(f"unknown runtime {name!r}; choose from {known}")
    return [r for r in RUNTIMES if r in chosen]


def unsupported_reason(runtime: str, target, family: str) -> str | None:
    """Why ``runtime`` cannot serve ``family`` models on ``target`` (None when it can)."""
    return backend(runtime).unsupported_reason(runtime, target, family)
