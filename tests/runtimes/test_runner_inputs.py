"""The device runners (TVM, ONNX Runtime, ExecuTorch) check everything they are given, built with AddressSanitizer and
UndefinedBehaviorSanitizer (EDGEBIT_SANITIZE=1): bad input is one line on stderr and exit status 2, never a signal
or a sanitizer report, and the deployment path (validate against the host reference, generate) runs clean."""

import json
import os
import shutil
import subprocess

import numpy as np
import pytest

from cli_helpers import EDGEBIT
from edgebit.bundle import LOADER_DIR, MODEL_CONF, Bundle, runtime_dir
from edgebit.toolchain.c_runtime import runner_argv
from fuzz.runner_inputs import SANITIZER_ENV, conf_case, npy_case, npy_seeds

RUNTIMES = ("tvm", "onnx-custom", "executorch")  # every runner and every custom-op library
MODELS = ("demo", "bimamba-demo")
# Bi-Mamba's bundle has the runtimes with its own C++ kernels (binary matmul, selective scan); the TVM runner is the
# same program for both families and is covered with BitNet.
MODEL_RUNTIMES = {"demo": RUNTIMES, "bimamba-demo": ("onnx-custom", "executorch")}
CASES = [(model, runtime) for model in MODELS for runtime in MODEL_RUNTIMES[model]]
each_runner = pytest.mark.parametrize("bundle, runtime", CASES, indirect=["bundle"])
# The token-id, .npy and generate-argument checks are runner_driver.h's, the same code in every runner program, and
# a runner program is the same for both families: the BitNet demo's three runners cover them. The model.conf and
# fuzz tests, whose cases depend on the model's state lines, run on every (model, runtime).
each_runner_program = pytest.mark.parametrize("bundle, runtime", [("demo", runtime) for runtime in RUNTIMES],
                                              indirect=["bundle"])
SANITIZER_MARKS = ("Sanitizer", "runtime error:")


def sanitized_env():
    return {**os.environ, **SANITIZER_ENV, "EDGEBIT_SANITIZE": "1"}


@pytest.fixture(scope="module")
def sanitized_bundles(tmp_path_factory):
    """``get(model)``: a sanitized x86_64 bundle of an embedded demo model with every runner kind, exported once per
    module. (A module-scoped fixture parametrized per test would be set up again each time the tests' order switches
    model: one export per test.)"""
    exported = {}

    def get(model):
        if model not in exported:
            out = tmp_path_factory.mktemp("sanitized") / f"{model}.bundle"
            runtimes = [arg for name in MODEL_RUNTIMES[model] for arg in ("-r", name)]
            result = subprocess.run([EDGEBIT, "export", model, "-t", "x86_64", *runtimes, "-o", str(out),
                                     "--max-seq-len", "64"], capture_output=True, text=True, env=sanitized_env(),
                                    timeout=900)
            assert result.returncode == 0, result.stderr
            assert "libasan.so.8" in os.listdir(out / LOADER_DIR)  # the bundle carries its sanitizer runtimes
            exported[model] = Bundle.open(out)
        return exported[model]

    return get


@pytest.fixture
def bundle(request, sanitized_bundles):
    return sanitized_bundles(request.param)


def run_runner(bundle, runtime, *args, env=None, root=None):
    root = root or bundle.root / runtime_dir(runtime)
    argv = runner_argv(str(bundle.root / LOADER_DIR), bundle.manifest.target.loader, str(root))
    return subprocess.run([*argv, str(root), *map(str, args)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **SANITIZER_ENV, **(env or {})}, errors="replace")


def assert_input_error(result, *fragments):
    """Exit status 2, one line (ExecuTorch's own log lines aside), no sanitizer report, no signal."""
    assert not any(mark in result.stderr for mark in SANITIZER_MARKS), result.stderr
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.startswith("edgebit-runner")]
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def assert_clean(result):
    assert result.returncode == 0, result.stderr
    assert not any(mark in result.stderr for mark in SANITIZER_MARKS), result.stderr


def npy_bytes(header: str, payload: bytes) -> bytes:
    """A version 1.0 .npy file with this header text and payload."""
    encoded = header.encode() + b"\n"
    return b"\x93NUMPY\x01\x00" + len(encoded).to_bytes(2, "little") + encoded + payload


def npy(path, array):
    np.save(path, array)
    return path


@pytest.mark.parametrize("bundle", MODELS, indirect=True)
def test_validate_and_generate_run_clean(bundle):
    """Every runtime's logits agree with the host (validate's bound), generation runs, with no sanitizer report."""
    result = subprocess.run([EDGEBIT, "validate", str(bundle.root), "--device", "local", "--json"],
                            capture_output=True, text=True, env=sanitized_env(), timeout=900)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["passed"] and {r["runtime"] for r in report["runtimes"]} == set(bundle.runtimes)
    assert not any(mark in result.stderr for mark in SANITIZER_MARKS), result.stderr
    for runtime in bundle.runtimes:
        generated = subprocess.run([EDGEBIT, "generate", str(bundle.root), "--device", "local", "-r", runtime,
                                    "-p", "Once upon a time", "-n", "12"], capture_output=True, text=True,
                                   env=sanitized_env(), timeout=600)
        assert generated.returncode == 0 and "Once upon a time" in generated.stdout, generated.stderr
        assert not any(mark in generated.stderr for mark in SANITIZER_MARKS), generated.stderr


def bad_ids_cases(vocab, max_seq_len):
    """(name, array or raw bytes, expected fragment) for the logits command."""
    return [
        ("id at vocab", np.array([[1, vocab]]), "outside the vocabulary"),
        ("negative id", np.array([[-1, 2]]), "outside the vocabulary"),
        ("most negative id", np.array([[np.iinfo(np.int64).min]]), "outside the vocabulary"),
        ("empty prompt", np.zeros((1, 0), np.int64), "no tokens"),
        ("empty batch", np.zeros((0, 4), np.int64), "no tokens"),
        ("too long", np.ones((1, max_seq_len + 1), np.int64), "max_seq_len"),
        ("float ids", np.ones((1, 3), np.float32), "int64"),
        ("int32 ids", np.ones((1, 3), np.int32), "int64"),
        ("rank 1", np.ones(3, np.int64), "int64 token ids [B, T]"),
        ("rank 3", np.ones((1, 1, 3), np.int64), "int64 token ids [B, T]"),
    ]


@each_runner_program
def test_bad_token_ids(bundle, runtime, tmp_path):
    vocab, max_seq_len = bundle.manifest.model.vocab_size, bundle.manifest.model.max_seq_len
    for name, array, fragment in bad_ids_cases(vocab, max_seq_len):
        path = npy(tmp_path / f"{name}.npy", array)
        assert_input_error(run_runner(bundle, runtime, "logits", path, tmp_path / "out.npy"), fragment)
        assert not (tmp_path / "out.npy").exists(), name


@each_runner_program
def test_bad_npy_files(bundle, runtime, tmp_path):
    good = npy(tmp_path / "good.npy", np.array([[1, 2, 3]]))
    data = good.read_bytes()
    cases = {"truncated data": (data[:-3], "truncated or altered"), "trailing bytes": (data + b"\0" * 8, "truncated"),
             "header only": (data[:20], "header is longer than the file"), "not npy": (b"hello world\n", "not a .npy"),
             "empty": (b"", "not a .npy"),
             "fortran": (data.replace(b"'fortran_order': False", b"'fortran_order': True "), "C-order"),
             "huge shape": (npy_bytes("{'descr': '<i8', 'fortran_order': False, 'shape': (1, 99999999999999), }",
                                      data[-24:]), "dimension"),
             "overflowing shape": (npy_bytes("{'descr': '<i8', 'fortran_order': False, 'shape': (4294967296, "
                                             "4294967296, 4294967296), }", data[-24:]), "2^40"),
             "object dtype": (npy_bytes("{'descr': '|O', 'fortran_order': False, 'shape': (1, 3), }", data[-24:]),
                              "unsupported dtype")}
    for name, (content, fragment) in cases.items():
        path = tmp_path / f"{name.replace(' ', '_')}.npy"
        path.write_bytes(content)
        assert_input_error(run_runner(bundle, runtime, "logits", path, tmp_path / "out.npy"), fragment)
    assert_input_error(run_runner(bundle, runtime, "logits", tmp_path / "missing.npy", tmp_path / "o.npy"),
                       "cannot open")
    assert_clean(run_runner(bundle, runtime, "logits", good, tmp_path / "out.npy"))
    assert np.load(tmp_path / "out.npy").shape == (1, 3, bundle.manifest.model.vocab_size)


@each_runner_program
def test_bad_generate_arguments(bundle, runtime, tmp_path):
    max_seq_len = bundle.manifest.model.max_seq_len
    prompt = npy(tmp_path / "prompt.npy", np.array([[1, 2, 3]]))
    out = tmp_path / "gen.npy"
    for count, fragment in (("-5", "N (the number"), ("0", "N (the number"), ("abc", "N (the number"),
                            ("3.5", "N (the number"), ("99999999999999999999999", "N (the number"),
                            (str(max_seq_len - 2), "exceed the bundle's max_seq_len")):
        assert_input_error(run_runner(bundle, runtime, "generate", prompt, count, out), fragment)
    two = npy(tmp_path / "two.npy", np.array([[1, 2], [3, 4]]))
    assert_input_error(run_runner(bundle, runtime, "generate", two, "4", out), "one prompt")
    empty = npy(tmp_path / "empty.npy", np.zeros((1, 0), np.int64))
    assert_input_error(run_runner(bundle, runtime, "generate", empty, "4", out), "no tokens")
    bad_threads = run_runner(bundle, runtime, "generate", prompt, "4", out, env={"EDGEBIT_NUM_THREADS": "lots"})
    assert_input_error(bad_threads, "EDGEBIT_NUM_THREADS")
    usage = run_runner(bundle, runtime, "generate", prompt)
    assert usage.returncode == 2 and "usage:" in usage.stderr
    unwritable = run_runner(bundle, runtime, "generate", prompt, "4", tmp_path / "no-such-dir" / "gen.npy")
    assert_input_error(unwritable, "cannot write")
    assert_clean(run_runner(bundle, runtime, "generate", prompt, "4", out))
    assert np.load(out).shape == (1, 4)


def edited_conf_cases(conf: str):
    """(name, model.conf text, expected fragment)."""
    lines = conf.splitlines()
    without = lambda key: "\n".join(line for line in lines if not line.startswith(key)) + "\n"
    vocab_line = next(line for line in lines if line.startswith("vocab_size"))
    return [("no vocab_size", without("vocab_size"), "needs 'inputs', 'max_seq_len' and 'vocab_size'"),
            ("no max_seq_len", without("max_seq_len"), "needs"),
            ("negative length", conf.replace("max_seq_len", "max_seq_len -").replace("- ", "-"), "max_seq_len"),
            ("huge state", conf + "state 65536 65536\n", "state larger"),
            ("overflowing state", conf + "state 16777216 16777216 16777216\n", "more than 2^40"),
            ("zero dimension", conf + "state 1 0 3\n", "a state dimension"),
            ("float16 state", conf + "state float16 1 3\n", "only a 'cache' may be float16"),
            ("dtype only", conf + "cache float16\n", "with 1 to 8 dimensions"),
            ("unknown key", conf + "colour blue\n", "unknown or repeated key 'colour'"),
            ("repeated key", conf + vocab_line + "\n", "unknown or repeated key 'vocab_size'"),
            ("binary", "\x00\xff\x93NUMPY\n", "unknown or repeated key"),
            ("wrong vocabulary", conf.replace(vocab_line, "vocab_size 7"), "")]


@each_runner
def test_bad_model_conf(bundle, runtime, tmp_path):
    """A model.conf that is missing, edited or disagrees with the model: one line, exit 2."""
    root = tmp_path / runtime
    shutil.copytree(bundle.root / runtime_dir(runtime), root, symlinks=True)
    conf = (root / MODEL_CONF).read_text()
    ids = npy(tmp_path / "ids.npy", np.array([[1, 2, 3]]))
    for name, text, fragment in edited_conf_cases(conf):
        (root / MODEL_CONF).write_text(text, encoding="latin-1")
        assert_input_error(run_runner(bundle, runtime, "logits", ids, tmp_path / "o.npy", root=root), fragment)
    small = npy(tmp_path / "small.npy", np.array([[1, 2, 3]]))
    (root / MODEL_CONF).write_text(conf.replace(f"vocab_size {bundle.manifest.model.vocab_size}", "vocab_size 5"))
    assert_input_error(run_runner(bundle, runtime, "logits", small, tmp_path / "o.npy", root=root), "vocab_size 5")
    (root / MODEL_CONF).unlink()
    assert_input_error(run_runner(bundle, runtime, "logits", ids, tmp_path / "o.npy", root=root), "cannot open")


@each_runner
def test_mutated_inputs_through_the_runner(bundle, runtime, tmp_path):
    """Fuzz cases through the real sanitized runner: only "ran" or a one-line input error. (The readers themselves
    take many more in tests/fuzz/test_fuzz_runner_readers.py, and benchmarks/fuzz_runner_readers.py runs >= 10,000
    per reader through the same reader code.)"""
    import random

    rng, seeds = random.Random(f"runner-{runtime}"), npy_seeds()
    ids = npy(tmp_path / "ids.npy", np.array([[1, 2, 3]]))
    root = tmp_path / "conf-root"
    shutil.copytree(bundle.root / runtime_dir(runtime), root, symlinks=True)
    for index in range(12):
        case = tmp_path / "case.npy"
        case.write_bytes(npy_case(rng, seeds))
        result = run_runner(bundle, runtime, "logits", case, tmp_path / "o.npy")
        assert result.returncode in (0, 2) and not any(m in result.stderr for m in SANITIZER_MARKS), \
            (index, result.returncode, result.stderr[-2000:])
        (root / MODEL_CONF).write_bytes(conf_case(rng))
        result = run_runner(bundle, runtime, "logits", ids, tmp_path / "o.npy", root=root)
        assert result.returncode in (0, 1, 2) and not any(m in result.stderr for m in SANITIZER_MARKS), \
            (index, result.returncode, result.stderr[-2000:])
