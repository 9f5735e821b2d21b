"""Every runtime x every operator, generated from the two registries: the runtimes of edgebit.runtimes.RUNTIMES and
the operators of ops/ (folders with a SPEC.md). Each runtime's ``operator_runner`` lowers the operator as its
bundles do and runs it on the host; the outputs are checked against ops/<op>/numpy_reference.py on its cases. A new
runtime or operator is covered without a line here, and one that lacks a runner fails by name."""

import importlib

import numpy as np
import pytest

from edgebit.runtimes import RUNTIMES, runtime
from edgebit.runtimes.base import operators
from edgebit.targets import resolve_target

HOST = resolve_target("x86_64")

pytestmark = pytest.mark.slow  # each case is one export + compile


@pytest.mark.parametrize("op", operators())
@pytest.mark.parametrize("name", RUNTIMES)
def test_runtime_runs_the_operator_as_its_numpy_reference(name, op):
    reference = importlib.import_module(f"edgebit_ops.{op}.numpy_reference")
    try:
        run = runtime(name).operator_runner(op, HOST)
    except NotImplementedError as error:
        pytest.fail(f"runtime {name} cannot run operator {op}: {error}")
    for case, args in reference.cases().items():
        outputs, expected = run(*args), reference.reference(*args)
        assert len(outputs) == len(expected), (name, op, case)
        for index, (out, want) in enumerate(zip(outputs, expected)):
            assert out.shape == want.shape and out.dtype == np.float32, (name, op, case, index, out.shape, out.dtype)
            error = np.abs(out - want).max() / np.abs(want).max()
            assert error <= reference.TOLERANCE, f"{name} {op} {case} output {index}: relative error {error:.2e}"
