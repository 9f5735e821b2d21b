"""Running a bundle on a device: logits for token ids, greedy generation, decode speed, and validation against the
bundle's reference vectors, for any of the bundle's runtimes. Before anything runs, the bundle's hashes are verified
and its architecture must match the device's; the bundle is pushed once per session."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from typing import Callable
from pathlib import Path

import numpy as np

from edgebit import bundle as bundle_format
from edgebit.errors import EdgebitError
from edgebit.validate.agreement import Agreement, compare_logits, per_position
from edgebit.bundle import Bundle, BundleError
from edgebit.devices import RUN_TIMEOUT_S, Device, DeviceError
from edgebit.sampling import Sampling
from edgebit.toolchain.c_runtime import RUNNER_ENVIRONMENT, runner_argv
from edgebit.validate.reference import perplexity

def check_compatible(bundle: Bundle, device: Device) -> None:
    bundle.verify()
    if bundle.debian_arch != device.debian_arch:
        raise BundleError(f"{bundle.root} was built for {bundle.target} ({bundle.debian_arch}) but device "
                          f"{device.describe()} runs {device.debian_arch}; export for the device's target")


@dataclass
class DeviceSession:
    """A verified bundle pushed to a device, ready to run the runner; pushes once, cleans up at the end."""

    bundle: Bundle
    device: Device
    threads: int = 1
    timeout: float = RUN_TIMEOUT_S  # seconds one runner command may take on the device
    remote_root: str = ""
    timings: dict = field(default_factory=dict)

    def __enter__(self) -> "DeviceSession":
        try:
            check_compatible(self.bundle, self.device)
            self.remote_root = self.device.push(self.bundle.root)
            self.device.verify_files(self.remote_root, self.bundle.manifest.files)
        except BaseException:
            self.device.cleanup()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.device.cleanup()

    def runner_command(self, runtime_root: str, args: list[str]) -> list[str]:
        """The runner started through the bundle's own loader and libraries (nothing from the device's system)."""
        return [*runner_argv(f"{self.remote_root}/{bundle_format.LOADER_DIR}", self.bundle.manifest.target.loader,
                             runtime_root), runtime_root, *args]

    def runner_environment(self) -> dict[str, str]:
        threads = str(self.threads)
        return {"TVM_NUM_THREADS": threads, "EDGEBIT_NUM_THREADS": threads, "TMPDIR": self.remote_root,
                **RUNNER_ENVIRONMENT}

    def _runner(self, runtime: str | None, args: list[str], inputs: np.ndarray, output_name: str,
                on_line=None) -> np.ndarray:
        runtime_root = f"{self.remote_root}/{bundle_format.runtime_dir(self.bundle.check_runtime(runtime))}"
        with tempfile.TemporaryDirectory() as tmp:
            local_in = Path(tmp) / "input_ids.npy"
            np.save(local_in, np.ascontiguousarray(inputs, dtype=np.int64))
            remote_in = self.device.push(local_in)
            remote_out = f"{self.remote_root}/{output_name}"
            command = self.runner_command(runtime_root, [args[0], remote_in, args[1], remote_out, *args[2:]]
                                          if len(args) > 1 else [args[0], remote_in, remote_out])
            result = self.device.run(command, timeout=self.timeout, env=self.runner_environment(), on_line=on_line)
            if result.returncode != 0:
                signal = f" (killed by {result.signal_name})" if result.signal_name else ""
                detail = (result.stderr.strip().splitlines() or ["no output"])[-1]
                raise DeviceError(f"the runner failed on {self.device.describe()}{signal}: {detail}")
            lines = [line for line in result.stdout.splitlines() if line.startswith('{"prefill')]
            self.timings = json.loads(lines[-1]) if lines else {}
            self.timings["wall_seconds"] = result.seconds
            local_out = Path(tmp) / output_name
            self.device.pull(remote_out, local_out)
            return np.load(local_out)

    def logits(self, input_ids: np.ndarray, runtime: str | None = None) -> np.ndarray:
        """float32 [B, T, V] for int64 [B, T] (``runtime``: one of the bundle's; default its first)."""
        if input_ids.ndim != 2:
            raise BundleError(f"input ids must be a 2-D int64 array [B, T], got shape {input_ids.shape}")
        return self._runner(runtime, ["logits"], input_ids, "logits.npy")

    def generate(self, prompt_ids: list[int], new_tokens: int, runtime: str | None = None,
                 sampling: Sampling | None = None, eos_id: int | None = None,
                 on_token: Callable[[int], None] | None = None) -> list[int]:
        """The continuation of ``prompt_ids`` computed on the device: greedy, or sampled as the host samples
        (edgebit.sampling: the same seed picks the same tokens); stops after ``eos_id`` (not returned).
        ``on_token`` gets each token id as the device produces it (streaming)."""
        args = ["generate", str(new_tokens), *(sampling.runner_args() if sampling else []),
                *(["--eos", str(eos_id)] if eos_id is not None else []), *(["--stream"] if on_token else [])]

        def streamed(line: str) -> None:
            if line.startswith('{"token": '):
                on_token(int(json.loads(line)["token"]))

        out = self._runner(runtime, args, np.array([prompt_ids], dtype=np.int64), "generated.npy",
                           streamed if on_token else None)
        return out[0].tolist()


@dataclass
class ValidationReport:
    runtime: str
    agreement: Agreement
    reference_perplexity: float
    device_perplexity: float
    timings: dict
    per_position: dict = field(default_factory=dict)  # agreement.per_position: where a device drifts

    @property
    def perplexity_delta(self) -> float:
        return self.device_perplexity - self.reference_perplexity

    @property
    def passed(self) -> bool:
        return self.agreement.passed

    def to_dict(self) -> dict:
        return {"runtime": self.runtime, "passed": self.passed, **self.agreement.to_dict(), "reference_perplexity": self.reference_perplexity,
                "device_perplexity": self.device_perplexity, "perplexity_delta": self.perplexity_delta,
                "timings": self.timings, "per_position": self.per_position}


def validate(session: DeviceSession, runtime: str | None = None) -> ValidationReport:
    """Run the bundle's reference inputs on the device through ``runtime`` and compare with the host's logits."""
    bundle = session.bundle
    runtime = bundle.check_runtime(runtime)
    inputs = np.load(bundle.file(bundle_format.REFERENCE_INPUTS))
    reference = np.load(bundle.file(bundle_format.REFERENCE_LOGITS))
    device_logits = session.logits(inputs, runtime)
    agreement = compare_logits(device_logits, reference, bundle.manifest.model.rounding_noise)
    return ValidationReport(runtime, agreement, perplexity(reference, inputs), perplexity(device_logits, inputs),
                            dict(session.timings),
                            per_position(device_logits, reference))


TEXT_WINDOW = 256  # tokens per window of a user's text (validate --text), or max_seq_len if smaller


def text_windows(token_ids: list[int], max_seq_len: int) -> np.ndarray:
    """int64 [B, W]: consecutive windows of W = min(TEXT_WINDOW, max_seq_len) tokens (a shorter tail is dropped; a
    text shorter than one window is one window of its own length). Each window is scored from an empty state."""
    window = min(TEXT_WINDOW, max_seq_len, len(token_ids))
    if window < 2:
        raise EdgebitError("the text has fewer than 2 tokens: there is nothing to predict")
    count = len(token_ids) // window
    return np.array(token_ids[:count * window], dtype=np.int64).reshape(count, window)


def text_perplexity(session: DeviceSession, runtime: str, windows: np.ndarray) -> float:
    """Token-level perplexity of ``windows`` under the device's logits through ``runtime``."""
    return perplexity(session.logits(windows, runtime), windows)


@dataclass
class DecodeSpeed:
    runtime: str
    prompt_tokens: int
    new_tokens: int
    prefill_tokens_per_s: float
    decode_tokens_per_s: float
    peak_rss_bytes: int = 0  # the most the runner process held resident (its own getrusage), over the runs
    runtime_bytes: int = 0  # the runtime's files in the bundle (model, weights, runner, libraries) + loader/


def measure_speed(session: DeviceSession, runtime: str, prompt_tokens: int, new_tokens: int,
                  repeats: int = 3) -> DecodeSpeed:
    """Median prefill and decode rates over ``repeats`` greedy runs of the device runner (after one warm-up)."""
    vocab = session.bundle.manifest.model.vocab_size
    prompt = np.random.default_rng(0).integers(0, vocab, prompt_tokens).tolist()
    prefill, decode, peak = [], [], 0
    session.generate(prompt, 2, runtime)  # warm-up: page in the model and libraries
    for _ in range(repeats):
        session.generate(prompt, new_tokens, runtime)
        t = session.timings
        prefill.append(t["prefill_tokens"] / t["prefill_seconds"])
        decode.append(t["decode_tokens"] / t["decode_seconds"])
        peak = max(peak, int(t.get("peak_rss_bytes", 0)))
    return DecodeSpeed(runtime, prompt_tokens, new_tokens, float(np.median(prefill)), float(np.median(decode)),
                       peak, runtime_bytes(session.bundle, runtime))


def runtime_bytes(bundle, runtime: str) -> int:
    """What a device must store to run ``runtime``: its directory of the bundle plus the shared loader/."""
    prefixes = (bundle_format.runtime_dir(runtime) + "/", bundle_format.LOADER_DIR + "/")
    return sum(bundle.file(f).stat().st_size for f in bundle.manifest.files if f.startswith(prefixes))
