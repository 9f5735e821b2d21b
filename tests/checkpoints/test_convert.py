"""`edgebit convert`: a full-precision Hugging Face BitNet checkpoint converted to edgebit's format (planar2 and
base3) and loaded again still agrees with transformers' BitNetForCausalLM on the source within the BitNet agreement
bound (embeddings and the untied head keep the source's precision), and the converted checkpoint exports and
validates on this machine."""

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import edgebit
from cli_helpers import run_cli
from edgebit.validate.agreement import compare_logits
from hf_checkpoints import TinyShape, transformers_logits, write_packed

SHAPE = TinyShape(vocab=96, hidden=48, intermediate=76, heads=4, kv_heads=2, tied=False)
HALF_CANDIDATES = ("model.embed_tokens.weight", "lm_head.weight")


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("convert")


@pytest.fixture(scope="module")
def source(work):
    """fp32 embeddings and head, packed ternary projections (the 2B-4T layout)."""
    return write_packed(work / "fp32", SHAPE, "bitlinear", seed=41)


@pytest.fixture(scope="module")
def input_ids():
    return torch.from_numpy(np.random.default_rng(3).integers(0, SHAPE.vocab, (2, 14), dtype=np.int64))


def converted(work, source, encoding):
    out = work / f"{source.name}-{encoding}"
    if not out.exists():
        result = run_cli("convert", source, "-o", out, "--encoding", encoding, check=True)
        assert f"wrote {out}" in result.stdout
    return out


def stored_dtypes(directory):
    with safe_open(str(directory / "model.safetensors"), "pt") as f:
        return {name: f.get_slice(name).get_dtype() for name in f.keys()}


@pytest.mark.parametrize("encoding", ["planar2", "base3"])
def test_converted_logits_agree_with_transformers(work, source, input_ids, encoding):
    out = converted(work, source, encoding)
    config = json.loads((out / "config.json").read_text())
    assert config["edgebit_format"] == 1 and config["weight_encoding"] == encoding
    suffix = ".w_packed" if encoding == "planar2" else ".w_base3"
    assert any(name.endswith(suffix) for name in stored_dtypes(out))
    reference = transformers_logits(source, input_ids).numpy()
    with torch.no_grad():
        logits = edgebit.load(out)(input_ids).numpy()
    result = compare_logits(logits, reference)
    assert result.passed, result.describe()


def test_source_precision_is_kept(work, source):
    """fp32 in, fp32 out; a bf16 source stays bf16 (not rounded to fp16)."""
    dtypes = stored_dtypes(converted(work, source, "planar2"))
    assert dtypes["embed_tokens.weight"] == "F32" and dtypes["lm_head.weight"] == "F32"

    bf16 = work / "bf16"
    bf16.mkdir(exist_ok=True)
    (bf16 / "config.json").write_text((source / "config.json").read_text())
    tensors = load_file(str(source / "model.safetensors"))
    for name in HALF_CANDIDATES:
        tensors[name] = tensors[name].to(torch.bfloat16)
    save_file(tensors, str(bf16 / "model.safetensors"))
    dtypes = stored_dtypes(converted(work, bf16, "base3"))
    assert dtypes["embed_tokens.weight"] == "BF16" and dtypes["lm_head.weight"] == "BF16"


@pytest.mark.slow  # converts the demo model twice
def test_demo_stays_fp16_when_reconverted(work):
    out = work / "demo-again"
    run_cli("convert", "demo", "-o", out, check=True)
    assert stored_dtypes(out)["embed_tokens.weight"] == "F16"
    assert (out / "tokenizer.json").is_file()


@pytest.mark.slow
def test_converted_checkpoint_exports_and_validates(work, source):
    bundle = work / "converted-x86_64.bundle"
    run_cli("export", converted(work, source, "base3"), "-t", "x86_64", "-o", bundle, "--max-seq-len", "32",
            check=True)
    result = run_cli("validate", bundle, "--device", "local", "--json", check=True)
    report = json.loads(result.stdout)
    assert report["passed"] and [r["runtime"] for r in report["runtimes"]] == ["tvm"]
