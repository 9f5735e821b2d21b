"""Long fuzz run of edgebit's readers; the mutators and targets are tests/fuzz (mutators.py, readers.py).

    .venv/bin/python benchmarks/fuzz_readers.py --cases 10000                  # every reader
    .venv/bin/python benchmarks/fuzz_readers.py --reader checkpoint --seed 3 --cases 500
    .venv/bin/python benchmarks/fuzz_readers.py --reader manifest --seed 0 --case 1234   # rerun one case

Readers: manifest (Bundle.open + verify; a small bundle written by BundleWriter), manifest-real (the same on
`edgebit export demo`, built once: about 15 s), checkpoint (load_checkpoint + summary, tiny checkpoints of every
layout), checkpoint-demo (the same on the embedded demo models), tokenizer (load_tokenizer + encode/decode).

Prints a table of counts per reader and exits 1 if any case crashed (an exception other than EdgebitError) or hung
(took longer than --hang-s): each kind of failure is printed once with its count, reproducer (reader, seed, case
index) and the mutated input saved under --failures. A hang inside native code, which Python's alarm cannot
interrupt, ends the run with the stacks dumped; failures/current-case.txt then names the case.
"""

from __future__ import annotations

import argparse
import faulthandler
import os
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")  # as tests/conftest.py: transformers writes the HF seeds
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from fuzz.readers import readers, run_reader  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=10000, help="cases per reader")
    parser.add_argument("--reader", action="append", choices=sorted(readers()), help="(repeatable) default: all")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--case", type=int, help="run only this case index (a reproducer)")
    parser.add_argument("--first", type=int, default=0, help="first case index")
    parser.add_argument("--hang-s", type=float, default=5.0, help="a case slower than this is a hang")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "edgebit-fuzz",
                        help="seed inputs, kept between runs")
    parser.add_argument("--errors", type=int, default=3, metavar="N",
                        help="print each reader's N most frequent EdgebitError messages (what the mutations reach)")
    parser.add_argument("--failures", type=Path, help="where failing inputs are saved (default: WORK/failures)")
    args = parser.parse_args(argv)
    args.failures = args.failures or args.work / "failures"
    first, cases = (args.case, 1) if args.case is not None else (args.first, args.cases)
    # A hang in native code never returns to Python's alarm: the watchdog dumps the stacks and ends the run, and the
    # marker file names the case it was in (as does a segfault's dump).
    faulthandler.enable()
    marker = args.failures / "current-case.txt"
    args.failures.mkdir(parents=True, exist_ok=True)
    for name in args.reader or sorted(readers()):  # inputs saved by an earlier run of the same cases
        for old in args.failures.glob(f"{name}-seed{args.seed}-case*"):
            shutil.rmtree(old)
    rows, failures = [], []
    for name in args.reader or sorted(readers()):
        reader = readers()[name]

        def before_case(index: int, name=name) -> None:
            marker.write_text(f"reader {name} seed {args.seed} case {index}\n")
            faulthandler.dump_traceback_later(args.hang_s * 6, exit=True)

        counts, found = run_reader(reader, cases, args.seed, args.work / name, hang_s=args.hang_s, first=first,
                                   failures_dir=args.failures, before_case=before_case)
        faulthandler.cancel_dump_traceback_later()
        rows.append((name, counts.as_dict()))
        if cases >= 100 and not (counts.accepted and counts.edgebit_errors):
            print(f"  {name}: warning: every case ended the same way; the mutations or the seeds are broken",
                  file=sys.stderr)
        for message, count in counts.common_errors(args.errors):
            print(f"  {name}: {count} x {message}", file=sys.stderr)
        failures += found
        print(f"{name}: {counts.as_dict()}", file=sys.stderr, flush=True)
    marker.unlink(missing_ok=True)
    columns = ["cases", "edgebit_errors", "accepted", "crashes", "hangs", "seconds"]
    print(f"\n{'reader':<16}" + "".join(f"{c:>16}" for c in columns))
    for name, counts in rows:
        print(f"{name:<16}" + "".join(f"{counts[c]:>16}" for c in columns))
    by_signature: dict[str, list] = {}
    for failure in failures:
        by_signature.setdefault(failure.signature, []).append(failure)
    for signature, group in sorted(by_signature.items(), key=lambda item: -len(item[1])):
        print(f"\n{len(group)} x {signature}\n  first: {group[0].reproducer()}")
    return 1 if failures or any(c["crashes"] or c["hangs"] for _, c in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
