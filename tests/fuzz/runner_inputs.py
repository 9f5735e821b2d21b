"""Fuzzing the device runners' readers (.npy token ids, model.conf) through a sanitized harness.

``runner_readers.cc`` compiles the runners' own reader code (edgebit/runtimes/runner_driver.h) with AddressSanitizer
and UndefinedBehaviorSanitizer and reads a batch of files per process. Cases are mutations of valid inputs, seeded
and reproducible: structure-aware (header fields, shapes, dtypes, conf keys and numbers) and byte-level (flips,
truncation, insertion, the header length field). The only outcomes allowed are "ok" and "input-error" with a
one-line message; an "other-error", a sanitizer report, a signal or a hang is a finding.

Used by tests/fuzz/test_fuzz_runner_readers.py (a few hundred cases) and benchmarks/fuzz_runner_readers.py (the long
run).
"""

from __future__ import annotations

import hashlib
import io
import random
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HARNESS_SOURCE = Path(__file__).parent / "runner_readers.cc"
KINDS = ("npy", "conf", "ids")
SANITIZER_ENV = {"ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:exitcode=86",
                 "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1:exitcode=87"}
BATCH = 250
BATCH_TIMEOUT_S = 60


def build_harness() -> Path:
    """The sanitized harness, built once per source (edgebit's cache, beside the runners)."""
    from edgebit.runtimes.base import DRIVER_HEADER
    from edgebit.toolchain import provision
    from edgebit.toolchain.sanitize import FLAGS

    digest = hashlib.sha256(HARNESS_SOURCE.read_bytes() + DRIVER_HEADER.read_bytes()).hexdigest()[:16]

    def build(staging: Path) -> None:
        subprocess.run(["g++", "-std=c++17", "-O1", *FLAGS, f"-I{DRIVER_HEADER.parent}", str(HARNESS_SOURCE),
                        "-o", str(staging / "runner_readers")], check=True, capture_output=True)

    return provision.cached_build(provision.cache_dir() / "fuzz" / f"runner-readers-{digest}", build) / "runner_readers"


# ---- valid seeds ----
def _npy_bytes(array: np.ndarray, version: tuple[int, int] | None = None) -> bytes:
    buffer = io.BytesIO()
    if version is None:
        np.save(buffer, array)
    else:
        np.lib.format.write_array(buffer, array, version=version)
    return buffer.getvalue()


def npy_seeds() -> list[bytes]:
    rng = np.random.default_rng(0)
    return [_npy_bytes(rng.integers(0, 1000, (1, 5))), _npy_bytes(rng.integers(0, 1000, (3, 7))),
            _npy_bytes(rng.standard_normal((2, 4)).astype(np.float32)), _npy_bytes(np.zeros((0, 3), np.int64)),
            _npy_bytes(rng.integers(0, 1000, (2, 64)), version=(2, 0)), _npy_bytes(np.arange(4, dtype=np.int32)),
            _npy_bytes(np.float64(3.5).reshape(()))]


CONF_SEEDS = ["inputs tokens position\nmax_seq_len 64\nvocab_size 1000\nstate 1 2 64 8\nstate 1 2 64 8\n",
              "inputs tokens\nmax_seq_len 256\nvocab_size 512\nstate 1 96 4\nstate 1 4 8 16\n",
              "# comment\n\ninputs tokens\nvocab_size 7\nmax_seq_len 1\n",
              "inputs tokens position\nmax_seq_len 64\nvocab_size 1000\ncache float16 64 4 32\ncache float32 64 4 32\n",
              "inputs tokens position logit_rows\nmax_seq_len 64\nvocab_size 1000\ncache float16 64 4 32\n",
              "inputs tokens logit_rows\nmax_seq_len 256\nvocab_size 512\nstate 1 96 4\n"]


# ---- mutations ----
INTERESTING_NUMBERS = ["0", "-1", "1", "64", "65", "999", "1000", "1001", "4294967296", "9223372036854775807",
                       "9223372036854775808", "18446744073709551616", "99999999999999999999999", "1e3", "0x10",
                       "+5", " ", "", "-0", "007", "nan"]


def _mutate_header(header: str, rng: random.Random) -> str:
    """Edit the .npy header dictionary's text: shapes, dtypes, orders, keys, quotes, brackets."""
    choice = rng.randrange(8)
    if choice == 0:
        dims = [rng.choice(INTERESTING_NUMBERS) for _ in range(rng.randrange(0, 10))]
        start, end = header.find("("), header.find(")")
        return header[:start + 1] + ", ".join(dims) + header[end:] if start >= 0 and end > start else header
    if choice == 1:
        return header.replace(header[header.find("'descr'"):][:16], rng.choice(
            ["'descr': '<i8'", "'descr': '>i8'", "'descr': '|u1'", "'descr': '<f4'", "'descr': '<f8'",
             "'descr': 'O'", "'descr': '<i8", "'descr' '<i8'", "'descr': 3", "'descr': '<U10'"]), 1)
    if choice == 2:
        return header.replace("False", rng.choice(["True", "Fals", "0", "None", "False False"]))
    if choice == 3:
        return header.replace(rng.choice(["{", "}", "(", ")", "'", ":", ","]), "", 1)
    if choice == 4:
        at = rng.randrange(len(header) + 1)
        return header[:at] + rng.choice(["'shape': (1,), ", "'extra': 1, ", "((", "))", "'", "\x00", "{}", ", ,"]) \
            + header[at:]
    if choice == 5:
        return header.replace("'shape'", rng.choice(["'shape '", "'Shape'", "'descr'", "\"shape\""]), 1)
    if choice == 6:
        return header[:rng.randrange(len(header) + 1)]
    return header + rng.choice(["", " " * rng.randrange(200), "x", "\n" * 3])


def _set_header(data: bytes, header: str) -> bytes:
    major = data[6] if len(data) > 6 else 1
    size = 2 if major == 1 else 4
    start = 8 + size
    old_len = int.from_bytes(data[8:start], "little") if len(data) >= start else 0
    body = data[start + old_len:]
    encoded = header.encode("latin-1", "replace")
    return data[:8] + len(encoded).to_bytes(size, "little", signed=False)[:size] + encoded + body


def _header_of(data: bytes) -> str:
    size = 2 if (data[6] if len(data) > 6 else 1) == 1 else 4
    length = int.from_bytes(data[8:8 + size], "little")
    return data[8 + size:8 + size + length].decode("latin-1")


def _mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    data = bytearray(data)
    for _ in range(rng.randrange(1, 4)):
        choice = rng.randrange(6)
        if choice == 0 and data:  # flip bytes
            for _ in range(rng.randrange(1, 8)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        elif choice == 1:  # truncate
            del data[rng.randrange(len(data) + 1):]
        elif choice == 2:  # insert
            at = rng.randrange(len(data) + 1)
            data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 32)))
        elif choice == 3 and len(data) > 11:  # the header length field / version bytes (bytes 6 to 11)
            at = rng.choice([6, 7, 8, 9, 10, 11])
            data[at] = rng.choice([0, 1, 2, 3, 4, 0x7f, 0xff, rng.randrange(256)])
        elif choice == 4:  # append data
            data += bytes(rng.randrange(256) for _ in range(rng.choice([1, 7, 8, 64])))
        elif data:  # delete a slice
            at = rng.randrange(len(data))
            del data[at:at + rng.randrange(1, 16)]
    return bytes(data)


def _with_ids(data: bytes, rng: random.Random) -> bytes:
    """A valid int64 [B, T] file with edge-case token ids and shapes (the checks against model.conf)."""
    batch, length = rng.choice([0, 1, 2, 3]), rng.choice([0, 1, 5, 63, 64, 65, 1000])
    ids = np.array([rng.choice([0, 5, 999, 1000, 1001, -1, -2**63, 2**63 - 1, rng.randrange(1000)])
                    for _ in range(batch * length)], dtype=np.int64).reshape(batch, length)
    return _npy_bytes(ids, version=rng.choice([None, (2, 0), (3, 0)]))


def npy_case(rng: random.Random, seeds: list[bytes]) -> bytes:
    choice = rng.randrange(4)
    if choice == 0:
        return _with_ids(b"", rng)
    data = rng.choice(seeds)
    if choice == 1:
        return _set_header(data, _mutate_header(_header_of(data), rng))
    if choice == 2:
        return _mutate_bytes(data, rng)
    return _mutate_bytes(_set_header(data, _mutate_header(_header_of(data), rng)), rng)


def conf_case(rng: random.Random) -> bytes:
    lines = rng.choice(CONF_SEEDS).splitlines()
    for _ in range(rng.randrange(1, 5)):
        choice = rng.randrange(7)
        if choice == 0 and lines:
            del lines[rng.randrange(len(lines))]
        elif choice == 1 and lines:
            lines.insert(rng.randrange(len(lines) + 1), rng.choice(lines))
        elif choice == 2 and lines:  # replace a number
            at = rng.randrange(len(lines))
            words = lines[at].split(" ")
            words[rng.randrange(len(words))] = rng.choice(INTERESTING_NUMBERS)
            lines[at] = " ".join(words)
        elif choice == 3:
            lines.insert(rng.randrange(len(lines) + 1), rng.choice(
                ["state", "state " + " ".join(["2"] * rng.randrange(1, 12)), "inputs", "inputs position tokens",
                 "inputs tokens tokens", "inputs tokens logit_rows position", "vocab_size", "max_seq_len 1 2",
                 "unknown 3", "\x00\xff", "#",
                 "state 65536 65536 65536", "state " + "1 " * 300]))
        elif choice == 4 and lines:
            at = rng.randrange(len(lines))
            lines[at] = lines[at][:rng.randrange(len(lines[at]) + 1)]
        elif choice == 5:
            lines = [line.replace(" ", rng.choice(["\t", "  ", ""])) for line in lines]
        else:
            return _mutate_bytes("\n".join(lines).encode(), rng)
    return ("\n".join(lines) + rng.choice(["\n", "", "\r\n"])).encode("latin-1", "replace")


@dataclass
class FuzzResult:
    kind: str
    cases: int = 0
    outcomes: dict = field(default_factory=lambda: {"ok": 0, "input-error": 0})
    findings: list = field(default_factory=list)  # (case index, what happened, saved file)

    @property
    def clean(self) -> bool:
        return not self.findings


def _run_batch(harness: Path, kind: str, files: list[Path]) -> tuple[int | None, list[str], str]:
    import os

    try:
        result = subprocess.run([str(harness), kind, *map(str, files)], capture_output=True, text=True,
                                timeout=BATCH_TIMEOUT_S, env={**os.environ, **SANITIZER_ENV}, errors="replace")
    except subprocess.TimeoutExpired:
        return None, [], "hang"
    return result.returncode, result.stdout.splitlines(), result.stderr


def fuzz(kind: str, cases: int, seed: int = 0, keep: Path | None = None) -> FuzzResult:
    """Run ``cases`` mutated inputs of ``kind`` (npy, conf, ids) through the sanitized harness."""
    harness = build_harness()
    rng = random.Random(f"{kind}-{seed}")
    seeds = npy_seeds()
    result = FuzzResult(kind)
    with tempfile.TemporaryDirectory() as work:
        for start in range(0, cases, BATCH):
            files = []
            for index in range(start, min(cases, start + BATCH)):
                data = conf_case(rng) if kind == "conf" else npy_case(rng, seeds)
                path = Path(work) / f"case-{index:07d}.{'conf' if kind == 'conf' else 'npy'}"
                path.write_bytes(data)
                files.append(path)
            code, lines, stderr = _run_batch(harness, kind, files)
            if code != 0 or len(lines) != len(files):  # name the failing cases one by one
                lines = []
                for path in files:
                    one_code, one_lines, one_stderr = _run_batch(harness, kind, [path])
                    if one_code == 0 and len(one_lines) == 1:
                        lines.append(one_lines[0])
                    else:
                        what = "hang" if one_code is None else f"exit {one_code}: {_summary(one_stderr)}"
                        result.findings.append((int(path.stem.split("-")[1]), what, _save(path, keep)))
                        lines.append(None)
            for path, line in zip(files, lines):
                result.cases += 1
                if line is None:
                    continue
                outcome = line.split(" ", 1)[0]
                if outcome in ("ok", "input-error") and "MULTILINE" not in line:
                    result.outcomes[outcome] += 1
                else:
                    result.findings.append((int(path.stem.split("-")[1]), line[:300], _save(path, keep)))
    return result


def _summary(stderr: str) -> str:
    """The line of a sanitizer report that names the error (else the last line)."""
    lines = stderr.strip().splitlines() or ["no output"]
    return next((line for line in lines if "SUMMARY" in line or "runtime error" in line), lines[-1])[:300]


def _save(path: Path, keep: Path | None) -> str:
    if keep is None:
        return ""
    keep.mkdir(parents=True, exist_ok=True)
    (keep / path.name).write_bytes(path.read_bytes())
    return str(keep / path.name)
