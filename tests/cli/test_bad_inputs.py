"""Bad checkpoints and flags give one clear line and exit status 2, through the real CLI."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from cli_helpers import assert_user_error, run_cli
from hf_checkpoints import TinyShape, write_packed

Q_PROJ = "model.layers.0.self_attn.q_proj.weight"


@pytest.fixture
def checkpoint(tmp_path):
    return write_packed(tmp_path / "ckpt", TinyShape(), "bitlinear")


def rewrite_tensors(directory, change):
    tensors = load_file(str(directory / "model.safetensors"))
    change(tensors)
    save_file(tensors, str(directory / "model.safetensors"))


def test_good_checkpoint_inspects(checkpoint):
    result = run_cli("inspect", checkpoint, "--json", check=True)
    info = json.loads(result.stdout)
    assert info["layout"] == "hf-bitnet"
    assert info["bits_per_ternary_weight"] == pytest.approx(2.0, abs=0.3)  # 2 bits + padding + one scale


def test_missing_directory(tmp_path):
    assert_user_error(run_cli("inspect", tmp_path / "nope"), "not a directory")


def test_missing_config(checkpoint):
    (checkpoint / "config.json").unlink()
    assert_user_error(run_cli("inspect", checkpoint), "no config.json")


def test_invalid_json_config(checkpoint):
    (checkpoint / "config.json").write_text("{not json")
    assert_user_error(run_cli("inspect", checkpoint), "not valid JSON")


def test_unknown_architecture(checkpoint):
    config = json.loads((checkpoint / "config.json").read_text())
    config["model_type"] = "gpt2"
    (checkpoint / "config.json").write_text(json.dumps(config))
    assert_user_error(run_cli("inspect", checkpoint), "unknown architecture", "gpt2")


def test_plain_llama_is_not_bitnet(checkpoint):
    config = json.loads((checkpoint / "config.json").read_text())
    config["model_type"] = "llama"
    (checkpoint / "config.json").write_text(json.dumps(config))
    assert_user_error(run_cli("inspect", checkpoint), "plain LLaMA")


def test_wrong_shape(checkpoint):
    rewrite_tensors(checkpoint, lambda t: t.update({Q_PROJ: t[Q_PROJ][:, :-1].contiguous()}))
    assert_user_error(run_cli("inspect", checkpoint), Q_PROJ, "shape")


def test_config_disagrees_with_weights(checkpoint):
    config = json.loads((checkpoint / "config.json").read_text())
    config["hidden_size"] = 48
    config["num_attention_heads"] = 4
    (checkpoint / "config.json").write_text(json.dumps(config))
    assert_user_error(run_cli("inspect", checkpoint), "shape")


@pytest.mark.parametrize("name,fill", [(Q_PROJ, 0), (Q_PROJ, 0x55), ("model.norm.weight", 0),
                                       ("model.layers.0.mlp.up_proj.weight_scale", 0)])
def test_all_zero_tensor(checkpoint, name, fill):
    """Raw all-zero bytes, and packed bytes 0x55 (every 2-bit code 1, i.e. every weight 0), are both rejected."""
    rewrite_tensors(checkpoint, lambda t: t.update({name: torch.full_like(t[name], fill)}))
    assert_user_error(run_cli("inspect", checkpoint), name, "all-zero" if fill else "all zeros")


def test_missing_tensor(checkpoint):
    rewrite_tensors(checkpoint, lambda t: t.pop("model.layers.1.mlp.down_proj.weight_scale"))
    assert_user_error(run_cli("inspect", checkpoint), "weight_scale", "missing")


def test_truncated_safetensors(checkpoint):
    path = checkpoint / "model.safetensors"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert_user_error(run_cli("inspect", checkpoint), "truncated")


@pytest.mark.slow  # two CLI runs
def test_pickle_needs_explicit_flag(checkpoint):
    tensors = load_file(str(checkpoint / "model.safetensors"))
    (checkpoint / "model.safetensors").unlink()
    torch.save(tensors, checkpoint / "pytorch_model.bin")
    assert_user_error(run_cli("inspect", checkpoint), "--allow-pickle")
    assert run_cli("inspect", checkpoint, "--allow-pickle").returncode == 0


@pytest.mark.slow  # three CLI runs
def test_sha256_pin(checkpoint):
    from edgebit.checkpoints.files import sha256_of

    good = sha256_of(checkpoint / "model.safetensors")
    assert run_cli("inspect", checkpoint, "--sha256", f"model.safetensors={good}").returncode == 0
    bad = "0" * 64
    assert_user_error(run_cli("inspect", checkpoint, "--sha256", f"model.safetensors={bad}"), "does not match")
    assert_user_error(run_cli("inspect", checkpoint, "--sha256", "model.safetensors=xyz"), "64-digit")


def test_missing_shard(checkpoint, tmp_path):
    from hf_checkpoints import write_sharded

    sharded = write_sharded(tmp_path / "sharded", checkpoint, shards=2)
    next(sharded.glob("model-00002-*.safetensors")).unlink()
    assert_user_error(run_cli("inspect", sharded), "missing")
