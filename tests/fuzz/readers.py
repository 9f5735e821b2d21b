"""Fuzz targets for edgebit's readers and the loop that runs them.

Each reader has valid seed inputs (built once into a work directory), a mutator that writes one mutated input into
a case directory, and the call the CLI makes on it. :func:`run_reader` runs ``cases`` cases and sorts each outcome:

* ``edgebit_errors``: the reader raised :class:`edgebit.errors.EdgebitError` (the CLI prints one line: correct);
* ``accepted``: the reader returned normally (the mutation left the input valid, or harmlessly odd);
* ``crashes``: anything else came out (a traceback in the CLI): a bug;
* ``hangs``: the case took longer than ``hang_s`` (stopped by an alarm if it was still running Python code).

Case ``i`` of seed ``s`` draws from ``random.Random(f"{reader}:{s}:{i}")``, so any one case reruns by itself.
Used by tests/fuzz/test_fuzz_readers.py (a few hundred cases) and benchmarks/fuzz_readers.py (the long run).
"""

from __future__ import annotations

import collections
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from fuzz import mutators

REPO = Path(__file__).resolve().parents[2]


class CaseTimeout(BaseException):
    """Raised by the alarm in a case that runs too long (BaseException: readers' ``except Exception`` miss it)."""


@dataclass
class Counts:
    cases: int = 0
    edgebit_errors: int = 0
    accepted: int = 0
    crashes: int = 0
    hangs: int = 0
    seconds: float = 0.0
    messages: collections.Counter = field(default_factory=collections.Counter)  # the EdgebitErrors, digits as N

    def common_errors(self, n: int) -> list[tuple[str, int]]:
        return self.messages.most_common(n)

    def as_dict(self) -> dict:
        return {"cases": self.cases, "edgebit_errors": self.edgebit_errors, "accepted": self.accepted,
                "crashes": self.crashes, "hangs": self.hangs, "seconds": round(self.seconds, 1)}


@dataclass
class Failure:
    reader: str
    seed: int
    index: int
    kind: str  # "crash" or "hang"
    what: str  # the mutation
    error: str
    trace: str
    seconds: float
    saved: Path | None = None

    @property
    def signature(self) -> str:
        """What makes two failures the same bug: the kind, the exception type and the innermost edgebit frame."""
        frames = re.findall(r'File "([^"]+)", line (\d+), in (\S+)', self.trace)
        ours = [f"{Path(f).relative_to(REPO)}:{line} {fn}" for f, line, fn in frames
                if Path(f).is_relative_to(REPO / "edgebit")]
        where = ours[-1] if ours else (f"{Path(frames[-1][0]).name}:{frames[-1][1]}" if frames else "?")
        return f"{self.kind} {self.error.split(':')[0]} at {where}"

    def reproducer(self) -> str:
        return (f"{self.kind} in reader {self.reader!r}, seed {self.seed}, case {self.index} ({self.what}), "
                f"{self.seconds:.2f} s: {self.error[:300]}\n  rerun: .venv/bin/python benchmarks/fuzz_readers.py "
                f"--reader {self.reader} --seed {self.seed} --case {self.index}"
                + (f"\n  input: {self.saved}" if self.saved else ""))


# --- the readers -----------------------------------------------------------------------------------------------


class Reader:
    name = ""

    def prepare(self, work: Path) -> None:
        """Build the seed inputs under ``work`` (kept: a second call reuses them)."""

    def seed_names(self) -> list[str]:
        return []

    def write_seed(self, name: str, case: Path) -> None:
        """Write the seed input ``name``, unmutated, into the (empty) directory ``case``."""
        raise NotImplementedError

    def make_case(self, rng: random.Random, case: Path) -> str:
        """Write one mutated input into the (empty) directory ``case``; return a short description."""
        raise NotImplementedError

    def run_case(self, case: Path) -> None:
        """What the CLI does with the input."""
        raise NotImplementedError

    def save(self, case: Path, destination: Path) -> None:
        shutil.copytree(case, destination, symlinks=True)


class ManifestReader(Reader):
    """``Bundle.open(dir).verify()`` (and the accessors every command uses) on a bundle whose manifest.json is
    mutated. ``real``: the seed bundle is ``edgebit export demo`` for the host (about 15 s, once); otherwise a small
    bundle written by the real BundleWriter with the real layout's file names and the demo's records."""

    def __init__(self, real: bool = False):
        self.name = "manifest-real" if real else "manifest"
        self.real = real
        self.bundle: Path | None = None
        self.manifest: dict = {}
        self.text = b""

    def prepare(self, work: Path) -> None:
        self.bundle = work / ("bundle-real" if self.real else "bundle-small")
        if not (self.bundle / "manifest.json").is_file():
            if self.real:
                export_demo_bundle(self.bundle)
            else:
                write_small_bundle(self.bundle)
        self.text = (self.bundle / "manifest.json").read_bytes()
        self.manifest = json.loads(self.text)

    def seed_names(self) -> list[str]:
        return ["bundle"]

    def write_seed(self, name: str, case: Path) -> None:
        self._link_files(case)
        (case / "manifest.json").write_bytes(self.text)

    def make_case(self, rng: random.Random, case: Path) -> str:
        self._link_files(case)
        if rng.random() < 0.75:
            document, what = mutators.mutate_json_value(self.manifest, rng), "manifest structure"
            data = mutators.dumps(document, rng)
        else:
            data, what = mutators.mutate_bytes(self.text, rng), "manifest bytes"
        (case / "manifest.json").write_bytes(data)
        return what

    def _link_files(self, case: Path) -> None:
        for path in self.bundle.rglob("*"):  # hard links: the files cost nothing per case
            if path.is_file() and path.name != "manifest.json":
                target = case / path.relative_to(self.bundle)
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.link(path, target)
                except OSError:  # a file system without hard links
                    shutil.copy2(path, target)

    def run_case(self, case: Path) -> None:
        from edgebit.bundle import Bundle

        bundle = Bundle.open(case)
        bundle.verify()
        bundle.check_runtime(None)
        _ = bundle.target, bundle.debian_arch, bundle.manifest.model.vocab_size

    def save(self, case: Path, destination: Path) -> None:
        destination.mkdir(parents=True)
        shutil.copy2(case / "manifest.json", destination / "manifest.json")
        (destination / "README").write_text(f"manifest.json of a case; the other files are those of {self.bundle}\n")


class CheckpointReader(Reader):
    """``load_checkpoint(dir, LoadOptions())`` and the family's summary (what ``edgebit inspect`` does) with
    config.json and/or model.safetensors mutated: on tiny checkpoints of every layout and both families, or
    (``demo``) on the two embedded demo models (slower: a few tenths of a second per accepted case)."""

    def __init__(self, demo: bool = False):
        self.name = "checkpoint-demo" if demo else "checkpoint"
        self.demo = demo
        self.seeds: dict[str, dict[str, bytes]] = {}

    def prepare(self, work: Path) -> None:
        if self.demo:
            root = REPO / "edgebit" / "demo"
        else:
            root = work / "checkpoints"
            if not (root / ".complete").is_file():
                shutil.rmtree(root, ignore_errors=True)
                write_seed_checkpoints(root)
                (root / ".complete").write_text("")
        for directory in sorted(p for p in root.iterdir() if p.is_dir()):
            self.seeds[directory.name] = {p.name: p.read_bytes() for p in directory.iterdir()
                                          if p.name in ("config.json", "model.safetensors")}

    def seed_names(self) -> list[str]:
        return sorted(self.seeds)

    def write_seed(self, name: str, case: Path) -> None:
        for file_name, data in self.seeds[name].items():
            (case / file_name).write_bytes(data)

    def make_case(self, rng: random.Random, case: Path) -> str:
        name = rng.choice(sorted(self.seeds))
        files = dict(self.seeds[name])
        roll = rng.random()
        parts = []
        if roll < 0.55 or roll >= 0.9:
            config = json.loads(files["config.json"])
            if rng.random() < 0.8:
                files["config.json"], what = mutators.dumps(mutators.mutate_json_value(config, rng), rng), "config"
            else:
                files["config.json"], what = mutators.mutate_bytes(files["config.json"], rng), "config bytes"
            parts.append(what)
        if roll >= 0.55:
            files["model.safetensors"] = mutators.mutate_safetensors(files["model.safetensors"], rng)
            parts.append("safetensors")
        for file_name, data in files.items():
            (case / file_name).write_bytes(data)
        return f"{name}: {' + '.join(parts)}"

    def run_case(self, case: Path) -> None:
        from edgebit.checkpoints import LoadOptions, load_checkpoint
        from edgebit.models import family_of

        model = load_checkpoint(case, LoadOptions())
        family_of(model).summarize(model)


class TokenizerReader(Reader):
    """``load_tokenizer(dir)`` then encode and decode (what ``edgebit generate`` does) with tokenizer.json mutated:
    the demo's BPE tokenizer and small WordPiece, WordLevel and Unigram ones."""

    name = "tokenizer"
    TEXTS = ["def main():\n    return 42", "", " ", "Grüße, 世界! \U0001f600", "\x00\ufffd", "a" * 300]

    def __init__(self):
        self.seeds: dict[str, bytes] = {}

    def prepare(self, work: Path) -> None:
        root = work / "tokenizers"
        done = root / ".complete"
        if not done.is_file():
            shutil.rmtree(root, ignore_errors=True)
            write_seed_tokenizers(root)
            done.write_text("")
        self.seeds = {p.stem: p.read_bytes() for p in sorted(root.glob("*.json"))}

    def seed_names(self) -> list[str]:
        return sorted(self.seeds)

    def write_seed(self, name: str, case: Path) -> None:
        (case / "tokenizer.json").write_bytes(self.seeds[name])

    def make_case(self, rng: random.Random, case: Path) -> str:
        name = rng.choice(sorted(self.seeds))
        data = self.seeds[name]
        if rng.random() < 0.75:
            document = mutators.mutate_json_value(json.loads(data), rng, shallow=0.7)
            data, what = mutators.dumps(document, rng), "structure"
        else:
            data, what = mutators.mutate_bytes(data, rng), "bytes"
        (case / "tokenizer.json").write_bytes(data)
        return f"{name}: {what}"

    def run_case(self, case: Path) -> None:
        from edgebit.generate import load_tokenizer

        tokenizer = load_tokenizer(case)
        for text in self.TEXTS:
            ids = tokenizer.encode(text).ids
            tokenizer.decode(ids)
        tokenizer.decode([0, 1, 2, 50, 4095, 4096, 100_000])


def readers() -> dict[str, Reader]:
    """Every fuzz target by name (new objects: a reader keeps its seeds once prepared)."""
    return {r.name: r for r in (ManifestReader(), ManifestReader(real=True), CheckpointReader(),
                                CheckpointReader(demo=True), TokenizerReader())}


# --- seed inputs -----------------------------------------------------------------------------------------------


def export_demo_bundle(destination: Path) -> None:
    """``edgebit export demo`` for the host target: a real bundle (TVM runtime, loader, tokenizer, references)."""
    from edgebit.targets import all_targets, host_debian_arch

    target = next(t for t in all_targets().values() if t.is_host and t.debian_arch == host_debian_arch())
    subprocess.run([sys.executable, "-c", "from edgebit.cli import main; main()", "export", "demo", "-t",
                    target.name, "-o", str(destination)], check=True, stdout=subprocess.DEVNULL)


def write_small_bundle(destination: Path) -> None:
    """A bundle written by BundleWriter with the real layout's names, the demo's model record and the host
    target's record; the files are small stand-ins (verify only hashes them)."""
    import numpy as np

    from edgebit import bundle as layout
    from edgebit.targets import all_targets, host_debian_arch

    target = next(t for t in all_targets().values() if t.is_host and t.debian_arch == host_debian_arch())
    demo = REPO / "edgebit" / "demo" / "bitnet-demo"
    config = json.loads((demo / "config.json").read_text())["config"]
    loader = f"ld-linux-{target.name.replace('_', '-')}.so.2"
    with layout.BundleWriter(destination) as writer:
        writer.add_file(demo / "tokenizer.json", layout.TOKENIZER)
        np.save(writer.path(layout.REFERENCE_INPUTS), np.arange(16, dtype=np.int64).reshape(1, 16))
        np.save(writer.path(layout.REFERENCE_LOGITS), np.zeros((1, 16, 8), dtype=np.float32))
        for name, text in {f"{layout.LOADER_DIR}/{loader}": "loader", f"{layout.LOADER_DIR}/libc.so.6": "libc",
                           f"{layout.runtime_dir('tvm')}/{layout.MODEL_CONF}": "max_seq_len 64\n",
                           f"{layout.runtime_dir('tvm')}/{layout.RUNNER}": "#!/bin/sh\n",
                           f"{layout.runtime_dir('tvm')}/{layout.LIB_DIR}/libtvm_runtime.so": "lib",
                           f"{layout.runtime_dir('tvm')}/model.so": "model",
                           f"{layout.runtime_dir('tvm')}/weights.params": "weights"}.items():
            writer.path(name).write_text(text)
        writer.commit({
            "model": {"family": "bitnet", "layout": "edgebit", "config": config, "max_seq_len": 64},
            "target": {"name": target.name, "triple": target.triple, "debian_arch": target.debian_arch,
                       "loader": loader, "features": list(target.features), "tvm": target.tvm_target_json()},
            "runtimes": {"tvm": {"version": "0.27.0"}},
            "built_on": "x86_64"})


def write_seed_checkpoints(root: Path) -> None:
    """Tiny checkpoints of every layout edgebit reads: edgebit's format (BitNet planar2 and base3, Bi-Mamba), HF
    BitNet packed and unpacked, 1bitLLM, transformers Mamba2 and the Bi-Mamba release (mamba_ssm) layout."""
    import torch
    from safetensors.torch import save_file

    from edgebit.checkpoints.edgebit_format import save_checkpoint
    from edgebit.models.bitnet.model import BitNetConfig, BitNetForCausalLM
    from hf_checkpoints import TinyShape, write_1bitllm, write_packed, write_unpacked
    from mamba_helpers import SHAPES, hf_mamba2, random_bimamba

    root.mkdir(parents=True)
    torch.manual_seed(0)
    bitnet = BitNetForCausalLM(BitNetConfig(vocab_size=53, hidden_size=32, intermediate_size=40,
                                            num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2))
    save_checkpoint(bitnet, root / "bitnet-edgebit-planar2", "planar2")
    save_checkpoint(bitnet, root / "bitnet-edgebit-base3", "base3")
    save_checkpoint(random_bimamba(SHAPES["groups1-odd"]), root / "bimamba-edgebit")
    write_packed(root / "bitnet-hf-packed", TinyShape(), "bitlinear")
    write_unpacked(root / "bitnet-hf-unpacked", TinyShape(tied=False))
    write_1bitllm(root / "bitnet-1bitllm", TinyShape(act="silu"))
    hf = hf_mamba2()
    hf.save_pretrained(root / "mamba2-hf")
    for extra in (root / "mamba2-hf").iterdir():
        if extra.name not in ("config.json", "model.safetensors"):
            extra.unlink()
    c = hf.config
    release = root / "bimamba-release"
    release.mkdir()
    (release / "config.json").write_text(json.dumps({
        "d_model": c.hidden_size, "n_layer": c.num_hidden_layers, "vocab_size": c.vocab_size,
        "ssm_cfg": {"layer": "Mamba2", "d_state": c.state_size, "headdim": c.head_dim, "ngroups": c.n_groups,
                    "d_conv": c.conv_kernel, "expand": c.expand}, "tie_embeddings": True}))
    tensors = {key.replace("backbone.embeddings.", "backbone.embedding."): value.clone()
               for key, value in hf.state_dict().items() if key != "lm_head.weight"}
    gen = torch.Generator().manual_seed(1)
    for i in range(c.num_hidden_layers):
        for proj in ("in_proj", "out_proj"):
            key = f"backbone.layers.{i}.mixer.{proj}"
            columns = tensors[key + ".weight"].shape[1]
            tensors[key + ".wscale"] = 0.05 + 0.05 * torch.rand(columns, generator=gen)
            tensors[key + ".wbias"] = 0.01 * torch.randn(columns, generator=gen)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(release / "model.safetensors"))


def write_seed_tokenizers(root: Path) -> None:
    """The demo's BPE tokenizer.json and small WordPiece, WordLevel and Unigram tokenizers whose vocabularies are
    the demo corpus's most frequent words and characters (built by hand: the library's trainers are not
    deterministic, and a seed must give the same cases on every run)."""
    import collections
    import math

    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers

    root.mkdir(parents=True)
    shutil.copyfile(REPO / "edgebit" / "demo" / "bitnet-demo" / "tokenizer.json", root / "bpe-demo.json")
    text = (REPO / "edgebit" / "demo" / "heldout.txt").read_text()[:50_000].lower()
    words = collections.Counter(text.split())
    frequent = [w for w, _ in sorted(words.items(), key=lambda item: (-item[1], item[0]))[:150]]
    chars = sorted(set(text) - set(" \n\t"))
    total = sum(words.values())
    kinds = {
        "wordlevel": models.WordLevel({w: i for i, w in enumerate(["[UNK]", *frequent])}, unk_token="[UNK]"),
        "wordpiece": models.WordPiece({w: i for i, w in enumerate(dict.fromkeys(
            ["[UNK]", "[CLS]", *chars, *(f"##{c}" for c in chars), *frequent]))}, unk_token="[UNK]"),
        "unigram": models.Unigram([("<unk>", 0.0)] + [(piece, math.log((words.get(piece, 0) + 1) / total))
                                                     for piece in dict.fromkeys([*chars, *frequent])], 0, False),
    }
    for name, model in kinds.items():
        tokenizer = Tokenizer(model)
        tokenizer.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace() if name == "unigram" else pre_tokenizers.Whitespace()
        if name != "wordlevel":
            tokenizer.decoder = decoders.Metaspace() if name == "unigram" else decoders.WordPiece()
        tokenizer.save(str(root / f"{name}.json"))


# --- the loop --------------------------------------------------------------------------------------------------


def _alarm(signum, frame):
    raise CaseTimeout()


COUNTERS = {"accepted": "accepted", "edgebit_error": "edgebit_errors", "crash": "crashes", "hang": "hangs"}


def case_rng(reader: str, seed: int, index: int) -> random.Random:
    return random.Random(f"{reader}:{seed}:{index}")


def run_reader(reader: Reader, cases: int, seed: int, work: Path, *, hang_s: float = 5.0, first: int = 0,
               failures_dir: Path | None = None, before_case: Callable[[int], None] | None = None,
               saves_per_signature: int = 3, extra_memory_mb: int | None = 4096) -> tuple[Counts, list[Failure]]:
    """Run cases ``first`` .. ``first + cases - 1`` of ``reader`` with ``seed``; the counts and every failure (the
    inputs of the first ``saves_per_signature`` of each kind saved under ``failures_dir``). ``work`` holds the seeds
    and a scratch case directory. While the cases run the address space may grow by ``extra_memory_mb`` only (None:
    no limit): a reader that tries to allocate more fails with MemoryError or RuntimeError, reported as a crash."""
    work.mkdir(parents=True, exist_ok=True)
    reader.prepare(work)
    check_seeds(reader, work / f"seed-{reader.name}")
    with address_space_limit(extra_memory_mb):
        return _run_cases(reader, cases, seed, work, hang_s, first, failures_dir, before_case, saves_per_signature)


def check_seeds(reader: Reader, scratch: Path) -> None:
    """Every unmutated seed is accepted (else the fuzzer only tests one error); also the warm-up, so that the
    first case's time does not include importing torch."""
    for name in reader.seed_names():
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir()
        reader.write_seed(name, scratch)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                reader.run_case(scratch)
        except Exception as exc:
            raise RuntimeError(f"the {reader.name} seed {name!r} is not accepted: {exc}") from exc
    shutil.rmtree(scratch, ignore_errors=True)


def _run_cases(reader, cases, seed, work, hang_s, first, failures_dir, before_case, saves_per_signature):
    from edgebit.errors import EdgebitError

    scratch = work / f"case-{reader.name}"
    counts, failures = Counts(), []
    use_alarm = hasattr(signal, "setitimer") and _in_main_thread()
    previous = signal.signal(signal.SIGALRM, _alarm) if use_alarm else None
    started = time.perf_counter()
    try:
        for index in range(first, first + cases):
            shutil.rmtree(scratch, ignore_errors=True)
            scratch.mkdir()
            rng = case_rng(reader.name, seed, index)
            try:
                what = reader.make_case(rng, scratch)
            except Exception as exc:  # a bug of the fuzzer, not of edgebit: stop with the case to debug
                raise RuntimeError(f"the mutator of {reader.name!r} failed in seed {seed} case {index}") from exc
            if before_case:
                before_case(index)
            outcome, error, trace = "accepted", "", ""
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    if use_alarm:
                        signal.setitimer(signal.ITIMER_REAL, hang_s * 2)
                    reader.run_case(scratch)
                except EdgebitError as exc:
                    outcome = "edgebit_error"
                    message = str(exc).replace(str(scratch), "CASE")
                    counts.messages[re.sub(r"\d+", "N", message)[:160]] += 1
                except CaseTimeout:
                    outcome, error, trace = "hang", f"still running after {hang_s * 2:g} s", traceback.format_exc()
                except KeyboardInterrupt:
                    raise
                except BaseException as exc:  # noqa: BLE001 - sorting every outcome is the point
                    outcome, trace = "crash", traceback.format_exc()
                    error = f"{type(exc).__module__}.{type(exc).__name__}: {exc}"[:2000]
                finally:
                    if use_alarm:
                        signal.setitimer(signal.ITIMER_REAL, 0)
            seconds = time.perf_counter() - t0
            if outcome in ("accepted", "edgebit_error") and seconds > hang_s:
                outcome, error = "hang", f"took {seconds:.1f} s (limit {hang_s:g} s; it ended as {outcome})"
            counts.cases += 1
            counter = COUNTERS[outcome]
            setattr(counts, counter, getattr(counts, counter) + 1)
            if outcome in ("crash", "hang"):
                failure = Failure(reader.name, seed, index, outcome, what, error, trace, seconds)
                same = sum(f.signature == failure.signature for f in failures)
                if failures_dir is not None and same < saves_per_signature:
                    failure.saved = failures_dir / f"{reader.name}-seed{seed}-case{index}"
                    shutil.rmtree(failure.saved, ignore_errors=True)
                    reader.save(scratch, failure.saved)
                    (failure.saved / "FAILURE.txt").write_text(failure.reproducer() + "\n\n" + trace)
                failures.append(failure)
    finally:
        if use_alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        shutil.rmtree(scratch, ignore_errors=True)
    counts.seconds = time.perf_counter() - started
    return counts, failures


class address_space_limit:
    """Cap the process's address space at its current size plus ``extra_mb`` while fuzzing (restored after), so a
    mutated size that makes a reader allocate gigabytes fails fast (and is reported) instead of exhausting memory."""

    def __init__(self, extra_mb: int | None):
        self.extra_mb = extra_mb
        self.previous = None

    def __enter__(self):
        try:
            import resource
        except ImportError:
            return self
        if self.extra_mb is None or not Path("/proc/self/statm").is_file():
            return self
        pages = int(Path("/proc/self/statm").read_text().split()[0])
        limit = pages * os.sysconf("SC_PAGE_SIZE") + self.extra_mb * 2 ** 20
        self.previous = resource.getrlimit(resource.RLIMIT_AS)
        soft, hard = self.previous
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        if soft == resource.RLIM_INFINITY or soft > limit:
            resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
        return self

    def __exit__(self, *exc):
        if self.previous is not None:
            import resource

            resource.setrlimit(resource.RLIMIT_AS, self.previous)


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
