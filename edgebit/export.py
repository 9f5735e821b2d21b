"""``edgebit export``: checkpoint -> bundle for one target, in named, timed stages.

Stages: load the checkpoint, compute reference vectors on the host, lower and compile through TVM, fetch the
target's runtime libraries, build the device runner, then write the bundle atomically (bundle.BundleWriter).
"""

from __future__ import annotations

import platform
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

import numpy as np

from edgebit import bundle as bundle_format
from edgebit.checkpoints import load_checkpoint
from edgebit.errors import EdgebitError
from edgebit.targets import Target

DEFAULT_MAX_SEQ_LEN = 256


class StageTimer:
    """Runs named stages, reports each to ``report(name, seconds)`` and keeps the timings."""

    def __init__(self, report: Callable[[str, float], None] | None = None):
        self.report = report or (lambda name, seconds: None)
        self.timings: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str):
        start = time.perf_counter()
        yield
        self.timings[name] = time.perf_counter() - start
        self.report(name, self.timings[name])


def export_bundle(model_dir: Path, target: Target, output: Path, max_seq_len: int = DEFAULT_MAX_SEQ_LEN,
                  allow_pickle: bool = False, sha256: dict[str, str] | None = None,
                  timer: StageTimer | None = None) -> bundle_format.Bundle:
    from edgebit.backends.tvm_backend import compile_model
    from edgebit.generate import TOKENIZER_FILE, load_tokenizer
    from edgebit.reference import host_logits, reference_inputs
    from edgebit.runtime.build import build_runner
    from edgebit.tvm_runtime_libs import runtime_libraries

    timer = timer or StageTimer()
    model_dir = Path(model_dir)
    with timer.stage("load checkpoint"):
        model = load_checkpoint(model_dir, allow_pickle=allow_pickle, sha256=sha256)
    config = model.config
    tokenizer = load_tokenizer(model_dir) if (model_dir / TOKENIZER_FILE).is_file() else None
    with timer.stage("reference vectors (host PyTorch)"):
        inputs = reference_inputs(config.vocab_size, tokenizer)
        if inputs.shape[1] > max_seq_len:
            raise EdgebitError(f"--max-seq-len {max_seq_len} is shorter than the reference inputs")
        logits = host_logits(model, inputs)
    with bundle_format.BundleWriter(output) as writer, tempfile.TemporaryDirectory() as work:
        with timer.stage(f"TVM lower + compile ({target.name})"):
            compiled = compile_model(model, target, max_seq_len, Path(work))
        writer.add_file(compiled.library, bundle_format.MODEL_LIBRARY)
        writer.add_file(compiled.weights, bundle_format.WEIGHTS)
        writer.path(bundle_format.MODEL_CONF).write_text(compiled.runner_conf())
        with timer.stage(f"runtime libraries ({target.debian_arch})"):
            for library in runtime_libraries(target):
                writer.add_file(library, f"{bundle_format.LIBRARY_DIR}/{library.name}")
        with timer.stage("device runner (C++)"):
            writer.add_file(build_runner(target), bundle_format.RUNNER)
        if tokenizer is not None:
            writer.add_file(model_dir / TOKENIZER_FILE, bundle_format.TOKENIZER)
        np.save(writer.path(bundle_format.REFERENCE_INPUTS), inputs)
        np.save(writer.path(bundle_format.REFERENCE_LOGITS), logits)
        with timer.stage("write bundle"):
            return writer.commit({
                "model": {"family": model.family, "layout": getattr(model, "layout", None),
                          "config": config.to_dict(), "max_seq_len": max_seq_len},
                "target": {"name": target.name, "triple": target.triple, "debian_arch": target.debian_arch,
                           "features": list(target.features), "tvm": target.tvm_target_json()},
                "runtime": {"name": "tvm", "version": _tvm_version()},
                "built_on": platform.machine(),
            })


def _tvm_version() -> str:
    import importlib.metadata

    return importlib.metadata.version("apache-tvm")
