"""Mamba-2 / Bi-Mamba checkpoints in the public layouts: transformers Mamba2 (binarized at load), the Bi-Mamba
release (mamba_ssm config, wscale/wbias), `edgebit binarize`, `edgebit inspect`, and bad inputs."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import edgebit
from cli_helpers import assert_user_error, run_cli
from edgebit.models.bimamba.checkpoints import fit_fbi
from mamba_helpers import FBI, hf_mamba2, w_hat_of, with_w_hat


def test_fit_fbi_is_the_per_column_least_squares_solution():
    w = torch.randn(40, 7, dtype=torch.float64) * 0.3 + 0.05
    signs, alpha, beta, error = fit_fbi(w)
    for col in range(7):
        s = np.where(w[:, col].numpy() >= 0, 1.0, -1.0)
        design = np.stack([s, np.ones_like(s)], axis=1)
        (a, b), *_ = np.linalg.lstsq(design, w[:, col].numpy(), rcond=None)
        assert abs(alpha[0, col].item() - a) < 1e-5 and abs(beta[0, col].item() - b) < 1e-5
    assert 0 < error < 1


def test_transformers_mamba2_checkpoint_binarized_at_load(tmp_path):
    hf = hf_mamba2()
    hf.save_pretrained(tmp_path / "mamba2")
    ours = edgebit.load(tmp_path / "mamba2")
    assert ours.layout == "hf-mamba2" and ours.config.n_groups == 2
    w_hat = w_hat_of(ours)
    ids = torch.randint(0, 64, (2, 10), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        reference = with_w_hat(hf, w_hat)(ids).logits
        logits = ours(ids)
    assert (logits - reference).abs().max().item() < 1e-3
    assert torch.equal(logits.argmax(-1), reference.argmax(-1))


def write_bimamba_release(directory, hf, seed=0, pickle=False):
    """The Bi-Mamba authors' layout: mamba_ssm config.json + backbone.* keys with wscale/wbias beside the latent
    in/out_proj weights."""
    gen = torch.Generator().manual_seed(seed)
    c = hf.config
    config = {"d_model": c.hidden_size, "n_layer": c.num_hidden_layers, "vocab_size": c.vocab_size,
              "ssm_cfg": {"layer": "Mamba2", "d_state": c.state_size, "headdim": c.head_dim, "ngroups": c.n_groups,
                          "d_conv": c.conv_kernel, "expand": c.expand},
              "rms_norm": True, "residual_in_fp32": True, "fused_add_norm": True, "pad_vocab_size_multiple": 8,
              "tie_embeddings": True}
    tensors = {}
    for key, value in hf.state_dict().items():
        if key == "lm_head.weight":
            continue
        tensors[key.replace("backbone.embeddings.", "backbone.embedding.")] = value.clone()
    for i in range(c.num_hidden_layers):
        for proj in ("in_proj", "out_proj"):
            key = f"backbone.layers.{i}.mixer.{proj}"
            in_features = tensors[key + ".weight"].shape[1]
            tensors[key + ".wscale"] = 0.02 + 0.05 * torch.rand(1, in_features, generator=gen)
            tensors[key + ".wbias"] = 0.01 * torch.randn(1, in_features, generator=gen)
    directory.mkdir(parents=True)
    (directory / "config.json").write_text(json.dumps(config))
    if pickle:
        torch.save(tensors, directory / "pytorch_model.bin")
    else:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(directory / "model.safetensors"))
    return directory, tensors


def test_bimamba_release_layout_matches_transformers_with_w_hat(tmp_path):
    hf = hf_mamba2(seed=3)
    directory, tensors = write_bimamba_release(tmp_path / "bimamba", hf)
    w_hat = {}
    for i in range(hf.config.num_hidden_layers):
        for proj in ("in_proj", "out_proj"):
            key = f"backbone.layers.{i}.mixer.{proj}"
            sign = torch.where(tensors[key + ".weight"] >= 0, 1.0, -1.0)
            w_hat[key] = FBI(sign, tensors[key + ".wscale"], tensors[key + ".wbias"])
    ids = torch.randint(0, 64, (1, 12), generator=torch.Generator().manual_seed(4))
    ours = edgebit.load(directory)
    assert ours.layout == "mamba-ssm"
    with torch.no_grad():
        reference = with_w_hat(hf, w_hat)(ids).logits
        logits = ours(ids)
    assert (logits - reference).abs().max().item() < 1e-3
    assert torch.equal(logits.argmax(-1), reference.argmax(-1))


@pytest.mark.slow  # several CLI runs
def test_binarize_and_inspect(tmp_path):
    hf_mamba2().save_pretrained(tmp_path / "mamba2")
    run_cli("binarize", tmp_path / "mamba2", "-o", tmp_path / "bi", check=True)
    info = json.loads(run_cli("inspect", tmp_path / "bi", "--json", check=True).stdout)
    assert info["family"] == "bimamba" and info["layout"] == "edgebit"
    assert info["binarized_compression_vs_fp16"] > 0.80  # the paper reports > 80 %
    packed = load_file(str(tmp_path / "bi" / "model.safetensors"))
    assert packed["layers.0.mixer.in_proj.w_signs"].dtype == torch.uint8
    ids = torch.randint(0, 64, (1, 7))
    saved, loaded = edgebit.load(tmp_path / "bi")(ids), edgebit.load(tmp_path / "mamba2")(ids)
    assert (saved - loaded).abs().max().item() < 5e-3  # the checkpoint stores embeddings in float16
    assert torch.equal(saved.argmax(-1), loaded.argmax(-1))


@pytest.mark.slow  # two CLI runs
def test_bimamba_pickle_needs_the_flag(tmp_path):
    directory, _ = write_bimamba_release(tmp_path / "bimamba", hf_mamba2(), pickle=True)
    assert_user_error(run_cli("inspect", directory), "--allow-pickle")
    assert run_cli("inspect", directory, "--allow-pickle").returncode == 0


def test_wrong_group_count_is_a_clear_error(tmp_path):
    hf_mamba2().save_pretrained(tmp_path / "mamba2")
    config = json.loads((tmp_path / "mamba2" / "config.json").read_text())
    config["n_groups"] = 1
    (tmp_path / "mamba2" / "config.json").write_text(json.dumps(config))
    assert_user_error(run_cli("inspect", tmp_path / "mamba2"), "n_groups")


def test_missing_state_tensor_is_a_clear_error(tmp_path):
    directory, tensors = write_bimamba_release(tmp_path / "bimamba", hf_mamba2())
    tensors.pop("backbone.layers.1.mixer.A_log")
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(directory / "model.safetensors"))
    assert_user_error(run_cli("inspect", directory), "A_log", "missing")
