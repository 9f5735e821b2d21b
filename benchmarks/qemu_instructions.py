"""Instructions executed per decoded token and per prompt token on arm64, counted under qemu: edgebit's TVM runner
built for arm64-dotprod (a Raspberry Pi 5 / phone core) beside llama.cpp's ``llama-bench`` cross-built for the same
ISA (ARMv8.2-A + dotprod, static, from the PyPI sdist peers.py builds), on the 2B-4T shape trimmed to a few layers
with the same random ternary weights (llama.cpp: TQ2_0 + F16 head; edgebit: ``--head``).

    .venv/bin/python benchmarks/qemu_instructions.py [--layers 4] [--head int8 q4] [--json]

Evidence for ARM without a board: the counts are exact and do not depend on the host's load. They are not time (an
``sdot`` counts one, as an ``add`` does, and memory stalls are invisible), but they show the work each engine does a
token. One thread each.

How: qemu-user 7.2 from Debian bookworm is dynamically linked and loads TCG plugins (the static qemu 10 that edgebit's
emulated devices use cannot); a ~30-line plugin compiled here against that release's ``qemu-plugin.h`` adds each
translated block's instruction count every time the block runs. Both engines run single-threaded, where that count
is exact. A per-token figure is the difference of two runs that differ only in the number of tokens, over that
number: start-up, model loading, warm-up and the F16/int8 table reads for the embedding cancel.
Opt-in (``make bench-peers``), never in CI; qemu, the plugin and the cross-built peer are cached outside the repo.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from peers import build_peer, log, peer_models  # noqa: E402
from ternary_gemv import random_ternary_model  # noqa: E402

QEMU_CPU = "cortex-a76"  # arm64-dotprod's qemu_cpu
PLUGIN_SOURCE = r"""
/* Counts guest instructions: each translated block adds its length to one counter whenever it runs (inline, so
 * exact for a single-threaded guest). Prints "insns: N" to qemu's log (-d plugin) at exit. Plugin API v1. */
#include <inttypes.h>
#include <stdio.h>
#include "qemu-plugin.h"

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;
static uint64_t executed;

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &executed, qemu_plugin_tb_n_insns(tb));
}

static void on_exit(qemu_plugin_id_t id, void *unused) {
    char line[64];
    snprintf(line, sizeof line, "insns: %" PRIu64 "\n", executed);
    qemu_plugin_outs(line);
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv) {
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    qemu_plugin_register_atexit_cb(id, on_exit, NULL);
    return 0;
}
"""


def counting_qemu() -> list[str]:
    """argv prefix that runs an aarch64 program under qemu-user 7.2 with the counting plugin (built once)."""
    from edgebit.toolchain import provision

    def build(staging: Path) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            debs = provision.download_debs("bookworm", "amd64", ("qemu-user", "libcapstone4", "liburing2"),
                                           Path(tmp) / "debs")
            for deb in debs:
                subprocess.run(["dpkg-deb", "-x", str(deb), str(staging)], check=True)
            # the plugin API header of the same release, from its source package
            state = provision.cache_dir() / "apt" / "bookworm-source"
            (state / "lists" / "partial").mkdir(parents=True, exist_ok=True)
            (state / "cache" / "archives" / "partial").mkdir(parents=True, exist_ok=True)
            (state / "sources.list").write_text(f"deb-src {provision.DEBIAN_MIRROR} bookworm main\n")
            options = provision._apt_options(state, "bookworm", "amd64")
            subprocess.run(["apt-get", "-qq", *options, "update"], check=True, stderr=subprocess.DEVNULL)
            subprocess.run(["apt-get", "-qq", *options, "source", "--download-only", "qemu"], cwd=tmp, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            with tarfile.open(next(Path(tmp).glob("qemu_*.orig.tar.*"))) as archive:
                member = next(m for m in archive.getmembers() if m.name.endswith("include/qemu/qemu-plugin.h"))
                (staging / "qemu-plugin.h").write_bytes(archive.extractfile(member).read())
        (staging / "count.c").write_text(PLUGIN_SOURCE)
        subprocess.run(["gcc", "-O2", "-shared", "-fPIC", f"-I{staging}", "-o", str(staging / "libcount.so"),
                        str(staging / "count.c")], check=True)

    root = provision.cached_build(provision.cache_dir() / "qemu-user-7.2-count", build)
    libraries = root / "usr" / "lib" / "x86_64-linux-gnu"
    # through the host's loader, so the library path reaches qemu and not the guest
    return ["/lib64/ld-linux-x86-64.so.2", "--library-path", str(libraries), str(root / "usr/bin/qemu-aarch64"),
            "-cpu", QEMU_CPU, "-plugin", str(root / "libcount.so"), "-d", "plugin"]


def count(argv: list[str], env: dict[str, str]) -> int:
    """Guest instructions ``argv`` executes (under :func:`counting_qemu`)."""
    result = subprocess.run([*counting_qemu(), *argv], env=env, capture_output=True, text=True)
    found = re.findall(r"insns: (\d+)", result.stderr)
    if result.returncode != 0 or not found:
        raise SystemExit(f"{Path(argv[0]).name} failed under qemu: {result.stderr.strip()[-500:]}")
    return int(found[-1])


def edgebit_runner(model, head: str, work: Path, max_seq_len: int):
    """A ``count_tokens(prompt, generated) -> instructions`` for edgebit's TVM runtime directory for arm64-dotprod."""
    from edgebit import runtimes
    from edgebit.models.head import set_head_precision
    from edgebit.targets import resolve_target
    from edgebit.toolchain.c_runtime import install_c_runtime, runner_command

    target = resolve_target("arm64-dotprod")
    set_head_precision(model, head)
    scratch, root = work / "scratch", work / f"tvm-{head}"
    scratch.mkdir()
    for relative, source in runtimes.runtime("tvm").build(model, target, max_seq_len, scratch).items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, root / relative)
    shutil.rmtree(scratch)
    install_c_runtime(target, root)
    env = {"EDGEBIT_NUM_THREADS": "1", "TVM_NUM_THREADS": "1"}
    vocab = model.config.vocab_size

    def count_tokens(prompt: int, generated: int) -> int:
        ids = work / "ids.npy"
        np.save(ids, np.random.default_rng(0).integers(0, vocab, (1, prompt), dtype=np.int64))
        return count([*runner_command(target, str(root)), str(root), "generate", str(ids), str(generated),
                      str(work / "out.npy")], env)

    return count_tokens


def llama_cpp_runner(gguf_path: Path):
    """``count_tokens(prompt, generated) -> instructions`` for llama.cpp's arm64 llama-bench, one thread, one
    repetition, no warm-up (a prompt test and a generation test when both are asked: here one of them is 0)."""
    bench = build_peer("llama.cpp", arm64=True) / "llama-bench"

    def count_tokens(prompt: int, generated: int) -> int:
        return count([str(bench), "-m", str(gguf_path), "-t", "1", "-p", str(prompt), "-n", str(generated),
                      "-r", "1", "--no-warmup", "-o", "json"], {})

    return count_tokens


def per_token(count_tokens, prompt: tuple[int, int], generated: tuple[int, int]) -> dict:
    """Instructions per prompt token and per decoded token from pairs of runs."""
    low, high = count_tokens(prompt[0], 1), count_tokens(prompt[1], 1)
    short, long = count_tokens(1, generated[0]), count_tokens(1, generated[1])
    return {"per_prompt_token": (high - low) / (prompt[1] - prompt[0]),
            "per_decoded_token": (long - short) / (generated[1] - generated[0])}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=4, help="layers of the 2B-4T shape (the head is full size)")
    parser.add_argument("--head", nargs="+", default=["int8", "q4"], choices=["int8", "q4", "fp32"],
                        help="edgebit's output head precisions (export --head)")
    parser.add_argument("--prompt", type=int, nargs=2, default=(16, 80), help="the two prompt lengths")
    parser.add_argument("--generated", type=int, nargs=2, default=(4, 12), help="the two generation lengths")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = []
    gguf_path = peer_models(random_ternary_model(args.layers), args.layers, ["llama.cpp"])["llama.cpp"]
    log("llama.cpp (TQ2_0 + F16 head) under qemu")
    # llama-bench's generation test starts from an empty context, ours after a 1-token prompt: the same depth
    rows.append({"engine": "llama.cpp", "weights": "TQ2_0 + F16 head",
                 **per_token(llama_cpp_runner(gguf_path), (args.prompt[0], args.prompt[1]),
                             (args.generated[0], args.generated[1]))})
    with tempfile.TemporaryDirectory() as tmp:
        for head in args.head:
            log(f"edgebit (planar 2-bit + {head} head, TVM) under qemu")
            runner = edgebit_runner(random_ternary_model(args.layers), head, Path(tmp),
                                    max(args.prompt) + max(args.generated) + 8)
            rows.append({"engine": "edgebit", "weights": f"planar 2-bit + {head} head (TVM)",
                         **per_token(runner, tuple(args.prompt), tuple(args.generated))})
    reference = rows[0]
    for row in rows:
        row["prompt_vs_llama.cpp"] = row["per_prompt_token"] / reference["per_prompt_token"]
        row["decoded_vs_llama.cpp"] = row["per_decoded_token"] / reference["per_decoded_token"]
    if args.json:
        print(json.dumps({"layers": args.layers, "cpu": QEMU_CPU, "results": rows}, indent=2))
        return 0
    print(f"arm64 ({QEMU_CPU}, ARMv8.2-A + dotprod) instructions under qemu, 2B-4T shape with {args.layers} layers "
          f"(full 128256 x 2560 head), one thread")
    print(f"{'engine':>10} {'weights':>34} {'M insns / prompt token':>23} {'ratio':>6} {'M insns / decoded token':>24} "
          f"{'ratio':>6}")
    for r in rows:
        print(f"{r['engine']:>10} {r['weights']:>34} {r['per_prompt_token'] / 1e6:23.1f} {r['prompt_vs_llama.cpp']:6.2f} "
              f"{r['per_decoded_token'] / 1e6:24.1f} {r['decoded_vs_llama.cpp']:6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
