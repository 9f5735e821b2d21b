"""A short fuzz run of the device runners' readers in CI (benchmarks/fuzz_runner_readers.py runs the long one):
the sanitized reader code must end every case in "ok" or a one-line input error, with no report, signal or hang."""

import pytest

from fuzz.runner_inputs import KINDS, fuzz

CASES = 400


@pytest.mark.parametrize("kind", KINDS)
def test_runner_readers_survive_mutated_inputs(kind):
    result = fuzz(kind, CASES, seed=2026)
    assert result.clean, result.findings[:3]
    assert result.cases == CASES
    # both outcomes occur: the mutations reach past the first check, and the checks refuse what they must
    assert result.outcomes["ok"] > 0 and result.outcomes["input-error"] > CASES // 4, result.outcomes
