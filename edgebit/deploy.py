"""Running a bundle on a device: logits for token ids, greedy generation, and validation against the bundle's
reference vectors. Before anything runs, the bundle's hashes are verified and its architecture must match the
device's."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgebit import bundle as bundle_format
from edgebit.agreement import Agreement, compare_logits
from edgebit.bundle import Bundle, BundleError
from edgebit.devices import Device, DeviceError
from edgebit.reference import perplexity

RUN_TIMEOUT_S = 1800.0


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
    remote_root: str = ""
    timings: dict = field(default_factory=dict)

    def __enter__(self) -> "DeviceSession":
        check_compatible(self.bundle, self.device)
        self.remote_root = self.device.push(self.bundle.root)
        return self

    def __exit__(self, *exc) -> None:
        self.device.cleanup()

    def _runner(self, args: list[str], inputs: np.ndarray, output_name: str) -> np.ndarray:
        with tempfile.TemporaryDirectory() as tmp:
            local_in = Path(tmp) / "input_ids.npy"
            np.save(local_in, np.ascontiguousarray(inputs, dtype=np.int64))
            remote_in = self.device.push(local_in)
            remote_out = f"{self.remote_root}/{output_name}"
            runner = f"{self.remote_root}/{bundle_format.RUNNER}"
            result = self.device.run([runner, self.remote_root, args[0], remote_in, *args[1:], remote_out],
                                     timeout=RUN_TIMEOUT_S, env={"TVM_NUM_THREADS": str(self.threads)})
            if result.returncode != 0:
                signal = f" (killed by {result.signal_name})" if result.signal_name else ""
                detail = (result.stderr.strip().splitlines() or ["no output"])[-1]
                raise DeviceError(f"the runner failed on {self.device.describe()}{signal}: {detail}")
            lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
            self.timings = json.loads(lines[-1]) if lines else {}
            self.timings["wall_seconds"] = result.seconds
            local_out = Path(tmp) / output_name
            self.device.pull(remote_out, local_out)
            return np.load(local_out)

    def logits(self, input_ids: np.ndarray) -> np.ndarray:
        """float32 [B, T, V] for int64 [B, T]."""
        if input_ids.ndim != 2:
            raise BundleError(f"input ids must be a 2-D int64 array [B, T], got shape {input_ids.shape}")
        return self._runner(["logits"], input_ids, "logits.npy")

    def generate(self, prompt_ids: list[int], new_tokens: int) -> list[int]:
        """Greedy continuation of ``prompt_ids`` computed on the device."""
        out = self._runner(["generate", str(new_tokens)], np.array([prompt_ids], dtype=np.int64), "generated.npy")
        return out[0].tolist()


@dataclass
class ValidationReport:
    agreement: Agreement
    reference_perplexity: float
    device_perplexity: float
    timings: dict

    @property
    def perplexity_delta(self) -> float:
        return self.device_perplexity - self.reference_perplexity

    @property
    def passed(self) -> bool:
        return self.agreement.passed

    def to_dict(self) -> dict:
        return {"passed": self.passed, **self.agreement.to_dict(), "reference_perplexity": self.reference_perplexity,
                "device_perplexity": self.device_perplexity, "perplexity_delta": self.perplexity_delta,
                "timings": self.timings}


def validate(session: DeviceSession) -> ValidationReport:
    """Run the bundle's reference inputs on the device and compare with the host's logits."""
    bundle = session.bundle
    inputs = np.load(bundle.file(bundle_format.REFERENCE_INPUTS))
    reference = np.load(bundle.file(bundle_format.REFERENCE_LOGITS))
    device_logits = session.logits(inputs)
    return ValidationReport(compare_logits(device_logits, reference), perplexity(reference, inputs),
                            perplexity(device_logits, inputs), dict(session.timings))
