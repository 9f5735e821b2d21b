"""Quantization-aware training works: the STE path learns, and the training script produces a loadable model."""

import json
import subprocess
import sys

import pytest
import torch

import edgebit
from edgebit.models.bitnet.model import TernaryLinear


@pytest.mark.slow  # training
def test_qat_learns_a_ternary_map():
    torch.manual_seed(0)
    target = torch.randint(-1, 2, (16, 32)).float()
    layer = TernaryLinear(32, 16)
    optimizer = torch.optim.Adam(layer.parameters(), lr=1e-2)
    x = torch.randn(256, 32)
    y = x @ target.T * 0.1
    losses = []
    for _ in range(300):
        loss = torch.nn.functional.mse_loss(layer(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.05 * losses[0], (losses[0], losses[-1])
    layer.pack()  # the packed layer computes what the trained latent layer computed
    assert torch.nn.functional.mse_loss(layer(x), y).item() < 0.05 * losses[0]


@pytest.mark.slow  # training
def test_training_script_end_to_end(tmp_path):
    sources = tmp_path / "corpus" / "html" / "_sources"
    sources.mkdir(parents=True)
    words = "the quick brown fox jumps over a lazy dog while python code runs fast and slow".split()
    gen = torch.Generator().manual_seed(0)
    for i in range(25):
        picks = torch.randint(0, len(words), (400,), generator=gen).tolist()
        (sources / f"doc{i:02d}.rst.txt").write_text(f"Title {i}\n=====\n\n" + " ".join(words[p] for p in picks))
    out = tmp_path / "model"
    subprocess.run([sys.executable, "-m", "edgebit.training.bitnet", "--corpus", str(tmp_path / "corpus"), "-o", str(out),
                    "--steps", "4", "--hidden-size", "32", "--intermediate-size", "48", "--layers", "1",
                    "--heads", "2", "--kv-heads", "1", "--vocab-size", "300", "--seq-len", "16", "--batch", "2",
                    "--warmup", "1", "--threads", "1"], check=True, capture_output=True, timeout=300)
    config = json.loads((out / "config.json").read_text())
    assert config["training"]["held_out_perplexity"] > 1
    assert (out / "tokenizer.json").is_file()
    model = edgebit.load(out)
    assert model(torch.tensor([[1, 2, 3]])).shape == (1, 3, config["config"]["vocab_size"])
