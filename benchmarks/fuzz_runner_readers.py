"""The long fuzz run of the device runners' readers (.npy token ids, model.conf) through the sanitized harness
(tests/fuzz/runner_inputs.py; CI runs a few hundred cases per reader).

    .venv/bin/python benchmarks/fuzz_runner_readers.py --cases 10000 [--kind npy|conf|ids] [--seed S] [--keep DIR]

Prints one row per reader (cases, accepted, input errors, findings, seconds) and exits 1 on any finding, with the
case index and what happened; --keep saves the failing inputs for a reproducer.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from fuzz.runner_inputs import KINDS, fuzz  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--kind", choices=KINDS, action="append")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, help="save failing inputs here")
    args = parser.parse_args()
    findings = 0
    print(f"{'reader':<8}{'cases':>8}{'ok':>8}{'input errors':>14}{'findings':>10}{'seconds':>9}")
    for kind in args.kind or KINDS:
        start = time.perf_counter()
        result = fuzz(kind, args.cases, args.seed, args.keep)
        print(f"{kind:<8}{result.cases:>8}{result.outcomes['ok']:>8}{result.outcomes['input-error']:>14}"
              f"{len(result.findings):>10}{time.perf_counter() - start:>9.1f}")
        for index, what, saved in result.findings[:20]:
            print(f"  case {index} (seed {args.seed}): {what} {saved}")
        findings += len(result.findings)
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
