"""ExecuTorch's own LLM runner (the executorch wheel's ``TextLLMRunner``, Python bindings of
``extension/llm/runner``) generates from a BitNet bundle's ``runtimes/executorch/model.pte`` and the bundle's
``tokenizer.json`` with edgebit's kernel library loaded into its process, and its greedy tokens are edgebit's host
generation's (edgebit.generate, temperature 0), compared as token ids. The program follows that runner's convention:
``forward(tokens [1, T], input_pos [1]) -> logits`` with the KV caches inside as mutable buffers updated in place,
plus the metadata methods it reads.

The runner runs in a child process: it is the way a user runs it (load the kernels, then the runner), and ExecuTorch
aborts the process on some failures, which must not take pytest down."""

import ctypes
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer

import edgebit
from edgebit.models.head import set_head_precision
from edgebit.models.kv_cache import set_kv_cache_precision
from cli_helpers import run_cli
from edgebit.bundle import LOADER_DIR, MODEL_CONF, Bundle, runtime_dir
from edgebit.generate import Sampling, generate_ids
from edgebit.runtimes.executorch import build as executorch_build
from edgebit.targets import resolve_target
from edgebit.toolchain.c_runtime import runner_argv

pytestmark = pytest.mark.slow  # exports the demo model through ExecuTorch

DEMO = Path(edgebit.__file__).parent / "demo" / "bitnet-demo"
MAX_SEQ_LEN = 64
NEW_TOKENS = 24
PROMPTS = ["A list is", "The function returns"]

# What a user writes (README.md): edgebit's kernels into the process first, then ExecuTorch's runner.
RUNNER_SCRIPT = """
import ctypes, json, sys
bundle, out, max_new_tokens, prompts = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
ctypes.CDLL(f"{bundle}/runtimes/executorch/lib/libedgebit_executorch_ops.so", mode=ctypes.RTLD_GLOBAL)
from executorch.extension.llm.runner import GenerationConfig, TextLLMRunner
runner = TextLLMRunner(f"{bundle}/runtimes/executorch/model.pte", f"{bundle}/tokenizer.json")
results = []
for prompt in prompts:
    pieces, stats = [], []
    runner.reset()
    runner.generate(prompt, GenerationConfig(echo=False, max_new_tokens=max_new_tokens, temperature=0.0),
                    pieces.append, stats.append)
    results.append({"pieces": pieces, "prompt_tokens": stats[0].num_prompt_tokens})
json.dump(results, open(out, "w"))
"""


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("llm-runner") / "demo.bundle"
    run_cli("export", "demo", "-t", "x86_64", "-r", "executorch", "--max-seq-len", MAX_SEQ_LEN, "-o", out, check=True)
    return out


@pytest.fixture(scope="module")
def cpp_tokenizer():
    """The C++ HF tokenizer of pytorch/tokenizers, the one ExecuTorch's runner links (same package version)."""
    from pytorch_tokenizers import CppHFTokenizer

    tokenizer = CppHFTokenizer()
    tokenizer.load(str(DEMO / "tokenizer.json"))
    return tokenizer


def run_llm_runner(bundle: Path, prompts: list[str], tmp_path: Path) -> list[dict]:
    out = tmp_path / "runner.json"
    result = subprocess.run([sys.executable, "-c", RUNNER_SCRIPT, str(bundle), str(out), str(NEW_TOKENS), *prompts],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(out.read_text())


def test_executorch_llm_runner_generates_edgebits_greedy_tokens(bundle, cpp_tokenizer, tmp_path):
    model = set_kv_cache_precision(set_head_precision(edgebit.load(DEMO), "int8"), "fp16")  # export's defaults
    tokenizer = Tokenizer.from_file(str(DEMO / "tokenizer.json"))  # Hugging Face's, as edgebit generate uses
    eos = model.config.eos_token_id
    # The runner reports each token as the text its tokenizer decodes it to: a piece that only one vocabulary entry
    # decodes to names that token's id. (Byte tokens that are no whole UTF-8 character have no Python string.)
    by_piece: dict[str, list[int]] = {}
    for token in range(cpp_tokenizer.vocab_size()):
        try:
            by_piece.setdefault(cpp_tokenizer.decode(token, token), []).append(token)
        except UnicodeDecodeError:
            pass

    results = run_llm_runner(bundle, PROMPTS, tmp_path)
    for prompt, result in zip(PROMPTS, results):
        prompt_ids = tokenizer.encode(prompt).ids
        assert cpp_tokenizer.encode(prompt, 0, 0) == prompt_ids  # the runner prefills what edgebit prefills
        assert result["prompt_tokens"] == len(prompt_ids)
        host = generate_ids(model, prompt_ids, Sampling(NEW_TOKENS, 0.0, 0, 0), eos)
        assert len(host) == NEW_TOKENS  # no end of text within the comparison: both runs stop at the same length
        ambiguous = [piece for piece in result["pieces"] if len(by_piece.get(piece, [])) != 1]
        assert not ambiguous, f"pieces that do not name one token: {ambiguous}"
        runner_ids = [by_piece[piece][0] for piece in result["pieces"]]
        assert runner_ids == host, (prompt, tokenizer.decode(runner_ids), tokenizer.decode(host))


def test_program_follows_the_llm_runner_convention(bundle):
    """forward(tokens [1, T] int64, input_pos [1] int64) -> logits [1, T, V]; the caches are planned mutable buffers
    written by the in-place index_put_ (no write-back copies); the metadata methods hold the bundle's values."""
    from executorch.exir._serialize._program import deserialize_pte_binary
    from executorch.extension.pybindings import portable_lib

    program_bytes = (bundle / "runtimes" / "executorch" / "model.pte").read_bytes()
    parsed = deserialize_pte_binary(program_bytes)
    plans = {plan.name: plan for plan in getattr(parsed, "program", parsed).execution_plan}
    forward = plans["forward"]
    assert (len(forward.inputs), len(forward.outputs)) == (2, 1)
    operators = {f"{op.name}.{op.overload}" for op in forward.operators}
    assert "aten::index_put_." in operators and not {"aten::copy_.", "aten::copy.out"} & operators
    assert "edgebit::ternary_linear.out" in operators

    config = edgebit.load(DEMO).config
    library = executorch_build.build(resolve_target("x86_64")) / "lib" / executorch_build.KERNEL_LIBRARY
    ctypes.CDLL(str(library), mode=ctypes.RTLD_GLOBAL)
    module = portable_lib._load_for_executorch_from_buffer(program_bytes)
    metadata = {name: module.run_method(name, ()) for name in plans if name != "forward"}
    assert metadata == {"get_max_seq_len": [MAX_SEQ_LEN], "get_max_context_len": [MAX_SEQ_LEN],
                        "get_vocab_size": [config.vocab_size], "get_n_layers": [config.num_hidden_layers],
                        "use_kv_cache": [True], "use_sdpa_with_kv_cache": [False], "enable_dynamic_shape": [True],
                        "get_bos_id": [config.bos_token_id], "get_eos_ids": [config.eos_token_id]}
    # The state carries between calls: decoding token by token after a prefill gives the logits of one prefill.
    ids = torch.tensor([[33, 586, 300, 261, 586, 306]])
    whole = module.forward((ids, torch.tensor([0])))[0].clone()
    parts = [module.forward((ids[:, :3].contiguous(), torch.tensor([0])))[0].clone()]
    parts += [module.forward((ids[:, t:t + 1].contiguous(), torch.tensor([t])))[0].clone() for t in range(3, 6)]
    torch.testing.assert_close(torch.cat(parts, dim=1), whole, rtol=1e-4, atol=1e-4)
    del module


def test_edgebits_runner_drives_the_same_program(bundle, tmp_path):
    """edgebit's own runner (bin/edgebit-runner) generates the same greedy tokens from this program (model.conf lists
    no states), and refuses a model.conf that describes other inputs than the program takes (exit status 2)."""
    opened = Bundle.open(bundle)
    root = tmp_path / "executorch"
    shutil.copytree(bundle / runtime_dir("executorch"), root, symlinks=True)
    argv = [*runner_argv(str(bundle / LOADER_DIR), opened.manifest.target.loader, str(root)), str(root)]
    conf = (root / MODEL_CONF).read_text()
    assert "state" not in conf and conf.startswith("inputs tokens position\n")

    model = set_kv_cache_precision(set_head_precision(edgebit.load(DEMO), "int8"), "fp16")  # export's defaults
    prompt = Tokenizer.from_file(str(DEMO / "tokenizer.json")).encode(PROMPTS[0]).ids
    np.save(tmp_path / "prompt.npy", np.array([prompt], dtype=np.int64))
    run = subprocess.run([*argv, "generate", tmp_path / "prompt.npy", str(NEW_TOKENS), tmp_path / "out.npy"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    host = generate_ids(model, prompt, Sampling(NEW_TOKENS, 0.0, 0, 0), model.config.eos_token_id)
    assert np.load(tmp_path / "out.npy").tolist() == [host]

    (root / MODEL_CONF).write_text(conf + "state 1 4 64 32\n")  # a model.conf of the explicit-state form
    run = subprocess.run([*argv, "logits", tmp_path / "prompt.npy", tmp_path / "logits.npy"], capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 2 and "describes 3 inputs but model.pte takes 2" in run.stderr, run.stderr
