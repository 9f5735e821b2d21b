"""``edgebit export``: checkpoint -> bundle for one target, in named, timed stages.

Stages: load the checkpoint, compute reference vectors on the host, build each requested runtime's directory
(edgebit.runtimes: TVM, ONNX Runtime, ExecuTorch: model file, device runner, libraries) in scratch directories, then
write the bundle atomically (bundle.BundleWriter). The writer is opened first: it locks the output directory for the
whole export (a second export to it fails at once) and owns every directory the export writes, so an interrupt, a
kill or a full disk leaves the output directory as it was (edgebit.bundle.output).
"""

from __future__ import annotations

import io
import platform
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from edgebit import bundle as bundle_format
from edgebit.bundle.layout import TOKENIZER_CONFIG
from edgebit.checkpoints import LoadOptions, load_checkpoint
from edgebit.errors import EdgebitError
from edgebit.targets import Target

# Without --max-seq-len a bundle serves the model's own context (max_position_embeddings), up to this many tokens:
# the KV cache of a 2B-4T-shaped model holds 150 KB per token in float32 (4096 tokens: 630 MB), and models without a
# position limit (Mamba-2) get this.
MAX_DEFAULT_SEQ_LEN = 4096
# Precisions of the output head and tied embedding (edgebit.models.head); the first is the default: int8 reads 4x
# fewer bytes per token than fp32 (benchmarks/ternary_gemv.py) for +-0.03 % held-out perplexity on both demo models;
# q4 (4.5 bits a weight) reads 1.9x fewer than int8 for +0.2-0.9 %, the user's choice where decode speed comes first.
HEAD_PRECISIONS = ("int8", "q4", "fp32")
# Precisions of a transformer's KV cache on the device (edgebit.models.kv_cache); the first is the default: fp16 halves
# the cache's memory and the bytes a step at depth reads for ~0.02 % held-out perplexity on the BitNet demo.
KV_CACHE_PRECISIONS = ("fp16", "fp32")


@dataclass(frozen=True)
class ExportConfig:
    """What ``edgebit export`` does: which checkpoint, for which target, into which bundle, with which runtimes
    (names or groups such as ``all``), the device's KV cache length, how to open the checkpoint, the Ed25519
    key that signs the manifest (edgebit.bundle.signing; None: unsigned), the output head's precision and the KV
    cache's (models that have one)."""

    model_dir: Path
    target: Target
    output: Path
    max_seq_len: int | None = None  # None: default_max_seq_len(model)
    runtimes: tuple[str, ...] = ("tvm",)
    load: LoadOptions = field(default_factory=LoadOptions)
    signing_key: Path | None = None
    head: str = HEAD_PRECISIONS[0]
    kv_cache: str = KV_CACHE_PRECISIONS[0]


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


def export_bundle(config: ExportConfig, timer: StageTimer | None = None,
                  skipped: Callable[[str, str], None] | None = None) -> bundle_format.Bundle:
    """Export ``config.model_dir`` for ``config.target`` with each of ``config.runtimes``.

    A runtime that cannot serve this model on this target is an error when asked for by name; with a group
    (``all``, ``onnx``) it is skipped and reported to ``skipped(runtime, reason)``.
    """
    from edgebit import runtimes
    from edgebit.bundle.signing import load_private_key

    # A bad key is found before minutes of compiling, not after.
    signer = load_private_key(config.signing_key).sign if config.signing_key is not None else None
    timer = timer or StageTimer()
    requested = list(config.runtimes) or ["tvm"]
    candidates = runtimes.resolve_runtimes(requested)  # unknown names fail before any work
    model_dir = Path(config.model_dir)
    with bundle_format.BundleWriter(config.output) as writer:  # the lock, before any work
        return _export_into(writer, config, model_dir, requested, candidates, timer, skipped, signer)


def _export_into(writer: bundle_format.BundleWriter, config: ExportConfig, model_dir: Path, requested: list[str],
                 candidates: list[str], timer: StageTimer, skipped: Callable[[str, str], None] | None,
                 signer: Callable[[bytes], bytes] | None) -> bundle_format.Bundle:
    """The stages of :func:`export_bundle`, into ``writer``: runtimes build in its scratch directories, and the
    bundle's files are copied into its staging directory at the end, once their total size is known."""
    from edgebit import runtimes
    from edgebit.generate import TOKENIZER_FILE, load_tokenizer
    from edgebit.toolchain.c_runtime import c_runtime_files, check_self_contained, is_elf, loader_name
    from edgebit.models.head import set_head_precision
    from edgebit.models.kv_cache import kv_cache_precision, set_kv_cache_precision
    from edgebit.validate.reference import host_logits, reference_inputs, rounding_noise

    target = config.target
    with timer.stage("load checkpoint"):
        model = load_checkpoint(model_dir, config.load)
    max_seq_len = config.max_seq_len or default_max_seq_len(model)
    chosen = []
    for runtime in candidates:
        reason = runtimes.unsupported_reason(runtime, target, model.family)
        if reason is None:
            chosen.append(runtime)
        elif runtime in requested:
            raise EdgebitError(f"runtime {runtime} cannot run {model.family} models on {target.name}: {reason}")
        elif skipped is not None:
            skipped(runtime, reason)
    if not chosen:
        raise EdgebitError(f"none of the runtimes {', '.join(requested)} supports {model.family} on {target.name}; "
                           "see `edgebit support-matrix`")
    tokenizer = load_tokenizer(model_dir) if (model_dir / TOKENIZER_FILE).is_file() else None
    with timer.stage("reference vectors (host PyTorch)"):
        inputs = reference_inputs(model.config.vocab_size, tokenizer)
        if inputs.shape[1] > max_seq_len:
            raise EdgebitError(f"--max-seq-len {max_seq_len} is shorter than the reference inputs")
        logits = host_logits(model, inputs)
        # The host reference computes as the device will: KV cache first (its cost measured with the fp32 head),
        # then the head (measured against the head of the checkpoint).
        kv_cache = None
        if kv_cache_precision(model) is not None:
            kv_cache, logits = _device_precision(model, inputs, logits, config.kv_cache, set_kv_cache_precision)
        head, logits = _device_precision(model, inputs, logits, config.head, set_head_precision)
        noise = rounding_noise(model, inputs, logits)
    sources: dict[str, Path] = {}  # bundle path -> file on the host
    runtime_info = {}
    for name in chosen:
        runtime = runtimes.runtime(name)
        with timer.stage(f"{name} ({target.name})"):
            files = runtime.build(model, target, max_seq_len, writer.scratch(name))
        sources.update({f"{bundle_format.runtime_dir(name)}/{relative}": Path(source)
                        for relative, source in files.items()})
        runtime_info[name] = {"version": runtime.version()}
    with timer.stage(f"C/C++ runtime ({target.name})"):
        binaries = [sources[relative] for relative in sorted(sources) if is_elf(sources[relative])]
        sources.update({f"{bundle_format.LOADER_DIR}/{name}": source
                        for name, source in c_runtime_files(target, binaries).items()})
    if tokenizer is not None:
        sources[bundle_format.TOKENIZER] = model_dir / TOKENIZER_FILE
    arrays = {bundle_format.REFERENCE_INPUTS: _npy(inputs), bundle_format.REFERENCE_LOGITS: _npy(logits)}
    if tokenizer is not None:
        arrays[TOKENIZER_CONFIG] = _tokenizer_config(model_dir)
    with timer.stage("write bundle"):
        writer.expect(sum(source.stat().st_size for source in sources.values()) + sum(map(len, arrays.values())))
        for relative, source in sorted(sources.items()):
            writer.add_file(source, relative)
        for relative, data in arrays.items():
            writer.write_bytes(relative, data)
        for name in chosen:
            check_self_contained(writer.staging / bundle_format.runtime_dir(name),
                                 writer.staging / bundle_format.LOADER_DIR)
        return writer.commit({
            "model": {"family": model.family, "layout": getattr(model, "layout", None),
                      "config": model.config.to_dict(), "max_seq_len": max_seq_len, "head": head,
                      **({"kv_cache": kv_cache} if kv_cache else {}), "rounding_noise": round(noise, 6)},
            "target": {"name": target.name, "triple": target.triple, "debian_arch": target.debian_arch,
                       "loader": loader_name(target),
                       "features": list(target.features), "tvm": target.tvm_target_json()},
            "runtimes": runtime_info,
            "built_on": platform.machine(),
        }, signer=signer)


def _device_precision(model, inputs: np.ndarray, logits: np.ndarray, precision: str, apply) -> tuple[dict, np.ndarray]:
    """Give the host ``model`` a device precision (``apply(model, precision)``: the head's or the KV cache's) and
    return the manifest record ({"precision", "reference_perplexity": {"fp32", precision}} when not fp32) with the
    logits of ``inputs`` it now computes; ``logits`` are the ones before."""
    from edgebit.validate.reference import host_logits, perplexity

    record = {"precision": precision}
    if precision == "fp32":
        return record, logits
    apply(model, precision)
    before = perplexity(logits, inputs)
    logits = host_logits(model, inputs)
    record["reference_perplexity"] = {"fp32": round(before, 4), precision: round(perplexity(logits, inputs), 4)}
    return record, logits


def default_max_seq_len(model) -> int:
    """The model's own context length, at most MAX_DEFAULT_SEQ_LEN (the device's KV cache costs memory, not time:
    a step reads only the rows filled so far)."""
    context = getattr(model.config, "max_position_embeddings", None)
    return min(context, MAX_DEFAULT_SEQ_LEN) if isinstance(context, int) and context > 0 else MAX_DEFAULT_SEQ_LEN


def _tokenizer_config(model_dir: Path) -> bytes:
    """The checkpoint's tokenizer_config.json, or one saying that tokenizer.json is the whole tokenizer: ONNX Runtime
    GenAI's tokenizer (the onnx-portable runtime directory points it at the bundle's root) needs both files."""
    path = model_dir / TOKENIZER_CONFIG
    return path.read_bytes() if path.is_file() else b'{"tokenizer_class": "PreTrainedTokenizerFast"}\n'


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()
