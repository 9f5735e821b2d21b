"""What the reader fuzzing found, one test each: every input here once raised something other than an EdgebitError
(a traceback in the CLI) or allocated gigabytes; now each is one clear user error."""

import json
import time

import pytest
import torch
from safetensors.torch import load_file, save_file

from edgebit.bundle import Bundle, BundleError
from edgebit.checkpoints import LoadOptions, load_checkpoint
from edgebit.checkpoints.edgebit_format import save_checkpoint
from edgebit.errors import CheckpointError, EdgebitError
from edgebit.generate import load_tokenizer
from edgebit.models.bitnet.model import BitNetConfig, BitNetForCausalLM


def test_bundle_errors_are_edgebit_errors():
    assert issubclass(BundleError, EdgebitError) and issubclass(CheckpointError, EdgebitError)


# --- manifest.json ---------------------------------------------------------------------------------------------


@pytest.fixture
def bundle_dir(tmp_path):
    from fuzz.readers import write_small_bundle

    write_small_bundle(tmp_path / "bundle")
    return tmp_path / "bundle"


def edit_manifest(bundle_dir, change):
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    change(manifest)
    (bundle_dir / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("text,reason", [
    (b'{"format_version": 3, "built_on": "\xff"}', "not UTF-8"),
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    (b'{"format_version": ' + b"9" * 5000 + b"}", "Exceeds the limit"),
])
def test_manifest_that_python_cannot_parse(bundle_dir, text, reason):
    (bundle_dir / "manifest.json").write_bytes(text)
    with pytest.raises(BundleError, match=f"not valid JSON \\({reason}.*export the bundle again"):
        Bundle.open(bundle_dir)


@pytest.mark.parametrize("field,value,message", [
    ("features", 5, "'features' must be a list of strings"),
    ("features", [["avx2"]], "'features' must be a list of strings"),
    ("tvm", [1, 2], "'tvm' must be an object"),
    ("tvm", "llvm", "'tvm' must be an object"),
])
def test_manifest_target_records_of_the_wrong_type(bundle_dir, field, value, message):
    edit_manifest(bundle_dir, lambda m: m["target"].update({field: value}))
    with pytest.raises(BundleError, match=message):
        Bundle.open(bundle_dir)


@pytest.mark.parametrize("name", ["x" * 256, "reference/" + "y" * 300, "a\0b"])
def test_manifest_file_names_no_file_system_holds(bundle_dir, name):
    """A name longer than 255 bytes made verify() raise OSError (ENAMETOOLONG) instead of a bundle error."""
    edit_manifest(bundle_dir, lambda m: m["files"].update({name: "0" * 64}))
    with pytest.raises(BundleError, match="is not a path inside the bundle"):
        Bundle.open(bundle_dir).verify()


# --- checkpoints -----------------------------------------------------------------------------------------------


@pytest.fixture
def bitnet_dir(tmp_path):
    torch.manual_seed(0)
    model = BitNetForCausalLM(BitNetConfig(vocab_size=53, hidden_size=32, intermediate_size=40, num_hidden_layers=2,
                                           num_attention_heads=4, num_key_value_heads=2))
    save_checkpoint(model, tmp_path / "ckpt")
    return tmp_path / "ckpt"


def edit_config(directory, change, record="config"):
    config = json.loads((directory / "config.json").read_text())
    change(config[record] if record else config)
    (directory / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize("key,value,message", [
    ("vocab_size", "53", "vocab_size must be a whole number from 1"),  # TypeError inside torch
    ("hidden_size", -32, "hidden_size must be a whole number from 1"),  # RuntimeError: negative dimension
    ("intermediate_size", 40.0, "intermediate_size must be a whole number"),
    ("num_hidden_layers", 0, "num_hidden_layers must be a whole number from 1"),  # ZeroDivisionError in summarize
    ("num_attention_heads", 0, "num_attention_heads must be a whole number from 1"),  # ZeroDivisionError
    ("rope_theta", 0.0, "rope_theta must be a finite number above 0"),  # ZeroDivisionError in the RoPE
    ("rope_theta", "10000", "rope_theta must be a finite number above 0"),  # TypeError
    ("rms_norm_eps", 10 ** 400, "rms_norm_eps must be a finite number above 0"),  # OverflowError in the check
    ("tie_word_embeddings", "false", "tie_word_embeddings must be true or false"),
    ("eos_token_id", [0], "eos_token_id must be a token id"),
])
def test_edgebit_config_values_of_the_wrong_type_or_range(bitnet_dir, key, value, message):
    edit_config(bitnet_dir, lambda c: c.update({key: value}))
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(bitnet_dir, LoadOptions())


@pytest.mark.parametrize("key,value", [("vocab_size", 2 ** 31 - 1), ("num_hidden_layers", 100_000),
                                       ("intermediate_size", 1_000_000)])
def test_config_larger_than_its_weights_fails_before_allocating(bitnet_dir, key, value):
    """A huge but valid size allocated (and randomly initialized) gigabytes before the shape check: a hang."""
    edit_config(bitnet_dir, lambda c: c.update({key: value}))
    start = time.perf_counter()
    with pytest.raises(CheckpointError, match="config.json does not match the weights"):
        load_checkpoint(bitnet_dir, LoadOptions())
    assert time.perf_counter() - start < 2


@pytest.mark.parametrize("record", [None, 5, [], "bitnet"])
def test_edgebit_config_record_not_an_object(bitnet_dir, record):
    edit_config(bitnet_dir, lambda c: c.update({"config": record}), record=None)
    with pytest.raises(CheckpointError, match='"config" must be an object'):
        load_checkpoint(bitnet_dir, LoadOptions())


def test_edgebit_family_of_an_unhashable_type(bitnet_dir):
    edit_config(bitnet_dir, lambda c: c.update({"family": {"a": 1}}), record=None)
    with pytest.raises(CheckpointError, match="unknown model family"):
        load_checkpoint(bitnet_dir, LoadOptions())


@pytest.fixture
def hf_bitnet_dir(tmp_path):
    from hf_checkpoints import TinyShape, write_packed

    return write_packed(tmp_path / "hf", TinyShape(), "bitlinear")


@pytest.mark.parametrize("key,value,message", [
    ("num_attention_heads", [3], "num_attention_heads must be a whole number"),  # TypeError from int()
    ("hidden_size", float("inf"), "hidden_size must be a whole number"),  # OverflowError from int()
    ("quantization_config", 1, "quantization_config must be an object"),  # AttributeError
    ("rope_scaling", [1], "rope_parameters / rope_scaling must be an object"),  # AttributeError
    ("rope_theta", [1], "rope_theta must be a finite number"),  # TypeError from float()
    ("num_key_value_heads", 2, "must be a multiple of num_key_value_heads"),
])
def test_hf_config_values_of_the_wrong_type(hf_bitnet_dir, key, value, message):
    edit_config(hf_bitnet_dir, lambda c: c.update({key: value}), record=None)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(hf_bitnet_dir, LoadOptions())


def test_hf_config_empty_eos_list_is_no_eos(hf_bitnet_dir):
    """"eos_token_id": [] raised IndexError."""
    edit_config(hf_bitnet_dir, lambda c: c.update({"eos_token_id": []}), record=None)
    assert load_checkpoint(hf_bitnet_dir, LoadOptions()).config.eos_token_id is None


@pytest.fixture
def mamba_ssm_dir(tmp_path):
    from fuzz.readers import write_seed_checkpoints

    write_seed_checkpoints(tmp_path / "seeds")
    return tmp_path / "seeds" / "bimamba-release"


@pytest.mark.parametrize("key,value,message", [
    ("d_model", [32], "d_model must be a whole number from 1"),  # TypeError from int()
    ("d_model", "relu2", "d_model must be a whole number from 1"),  # ValueError outside the try
    ("n_layer", "2", "num_hidden_layers must be a whole number"),
])
def test_mamba_ssm_config_values_of_the_wrong_type(mamba_ssm_dir, key, value, message):
    edit_config(mamba_ssm_dir, lambda c: c.update({key: value}), record=None)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(mamba_ssm_dir, LoadOptions())


@pytest.mark.parametrize("limit", [[0.0, 10 ** 400], [1.0, 0.0], [0.0], "ab", [0.0, None]])
def test_bimamba_time_step_limit(tmp_path, limit):
    """An integer beyond float's range raised OverflowError."""
    from fuzz.readers import write_seed_checkpoints

    write_seed_checkpoints(tmp_path / "seeds")
    directory = tmp_path / "seeds" / "bimamba-edgebit"
    edit_config(directory, lambda c: c.update({"time_step_limit": limit}))
    with pytest.raises(CheckpointError, match="time_step_limit must be two numbers"):
        load_checkpoint(directory, LoadOptions())


def test_mamba_ssm_headdim_zero(mamba_ssm_dir):
    """ZeroDivisionError in (expand * d_model) % headdim."""
    edit_config(mamba_ssm_dir, lambda c: c["ssm_cfg"].update({"headdim": 0}), record=None)
    with pytest.raises(CheckpointError, match="ssm_cfg.headdim must be a whole number from 1"):
        load_checkpoint(mamba_ssm_dir, LoadOptions())


@pytest.mark.parametrize("dtype", [torch.float8_e4m3fn, torch.float8_e5m2, torch.float8_e8m0fnu, torch.uint32,
                                   torch.complex64])
def test_tensor_dtypes_torch_cannot_convert(bitnet_dir, dtype):
    """A packed tensor stored as FP8 made unpacking raise NotImplementedError ("max_all" not implemented)."""
    tensors = load_file(str(bitnet_dir / "model.safetensors"))
    name = "layers.0.mlp.down_proj.w_packed"
    tensors[name] = torch.ones(tensors[name].shape, dtype=torch.float32).to(dtype)
    save_file(tensors, str(bitnet_dir / "model.safetensors"))
    with pytest.raises(CheckpointError, match=f"{name}' has dtype .*which edgebit does not read"):
        load_checkpoint(bitnet_dir, LoadOptions())


def test_safetensors_index_that_leaves_the_directory(bitnet_dir):
    (bitnet_dir / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"a": "../model.safetensors"}}))
    with pytest.raises(CheckpointError, match="is not a file name in the checkpoint directory"):
        load_checkpoint(bitnet_dir, LoadOptions())


# --- tokenizer.json --------------------------------------------------------------------------------------------


def test_tokenizer_the_library_cannot_read(tmp_path):
    (tmp_path / "tokenizer.json").write_text('{"model": {"type": "BPE", "merges": [1]}}')
    with pytest.raises(EdgebitError, match="tokenizer.json: cannot be read .*restore tokenizer.json"):
        load_tokenizer(tmp_path)


def test_tokenizer_that_fails_only_on_some_text(tmp_path):
    """A WordLevel tokenizer whose unknown token is missing loads, then raised Exception on an unknown word."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    tokenizer = Tokenizer(models.WordLevel({"hello": 0}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.save(str(tmp_path / "tokenizer.json"))
    loaded = load_tokenizer(tmp_path)
    assert loaded.encode("hello").ids == [0] and loaded.decode([0]) == "hello"
    assert loaded.get_vocab_size() == 1  # the rest of the Tokenizer is there
    with pytest.raises(EdgebitError, match="cannot encode the text"):
        loaded.encode("hello world")
