"""The embedded demo model: small enough to ship, trained (held-out perplexity recorded), and it writes text."""

import json
from pathlib import Path

import pytest
import torch

import edgebit
from cli_helpers import run_cli
from edgebit.cli import EMBEDDED_MODELS
from edgebit.generate import Sampling, generate_text, load_tokenizer
from edgebit.models import summarize

DEMO = EMBEDDED_MODELS["demo"]


def test_demo_files_fit_the_budget():
    total = sum(p.stat().st_size for p in Path(DEMO).iterdir())
    assert total <= 8 * 1024 * 1024, total


def test_demo_records_training():
    training = json.loads((DEMO / "config.json").read_text())["training"]
    assert training["command"].startswith("python -m edgebit.train")  # as recorded when trained (now edgebit.training.bitnet)
    assert 1 < training["held_out_perplexity"] < 200  # a 4096-token vocabulary; uniform would be 4096


def test_demo_packed_size_is_two_bits_per_ternary_weight():
    info = summarize(edgebit.load(DEMO))
    assert info["bits_per_ternary_weight"] == pytest.approx(2.0, abs=0.01)
    assert 1e6 < info["parameters"]["total"] < 2e7


@pytest.mark.slow  # generates 40 tokens with the demo model
def test_demo_generates_english_like_text():
    model = edgebit.load(DEMO)
    text = generate_text(model, load_tokenizer(DEMO), "The Python interpreter", Sampling(40, 0.0, 0, 0))
    words = text.split()
    assert len(words) >= 10
    known = sum(w.strip(".,:;()'\"").lower() in COMMON for w in words)
    assert known >= 3, text


def test_demo_held_out_loss_beats_unigram():
    """The trained model predicts real text better than token frequencies alone could."""
    tokenizer = load_tokenizer(DEMO)
    text = ("The function returns a new list containing the items of the iterable. If the argument is omitted, "
            "the default value is used. This module provides functions for working with files and directories.")
    ids = torch.tensor([tokenizer.encode(text).ids])
    logits = edgebit.load(DEMO)(ids)
    loss = torch.nn.functional.cross_entropy(logits[0, :-1], ids[0, 1:]).item()
    assert loss < 5.0, loss  # log(4096) = 8.3 for a uniform guess


@pytest.mark.slow  # generates through the CLI
def test_cli_generate_demo():
    result = run_cli("generate", "demo", "--prompt", "A list is", "-n", "12", "--seed", "1", check=True)
    assert result.stdout.startswith("A list is") and len(result.stdout.split()) > 5


COMMON = set("the a an of to in is and for be that this with are as it by on or not if from can which used "
             "module function object value file list name data type return returns class method string".split())
