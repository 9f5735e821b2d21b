"""edgebit.load on tiny HF BitNet checkpoints agrees with transformers' BitNetForCausalLM (the BitNet agreement
bound of edgebit.validate.agreement), in both scale conventions, packed and unpacked, tied and untied, GQA and odd sizes."""

import pytest
import torch

import edgebit
from edgebit.validate.agreement import compare_logits
from hf_checkpoints import TinyShape, transformers_logits, write_packed, write_sharded, write_unpacked

SHAPES = {
    "odd-gqa-tied": TinyShape(),
    "gqa-untied": TinyShape(vocab=64, hidden=64, intermediate=96, heads=8, kv_heads=2, tied=False),
    "mha-3layers": TinyShape(vocab=80, hidden=40, intermediate=60, layers=3, heads=5, kv_heads=5),
}


def input_ids(vocab):
    return torch.randint(0, vocab, (2, 11), generator=torch.Generator().manual_seed(3))


def assert_agrees(directory, shape):
    ids = input_ids(shape.vocab)
    reference = transformers_logits(directory, ids)
    ours = edgebit.load(directory)(ids)
    assert ours.dtype == torch.float32 and ours.shape == (2, 11, shape.vocab)
    result = compare_logits(ours.detach(), reference)
    assert result.passed, result.describe()
    return result


@pytest.mark.parametrize("linear_class", ["bitlinear", "autobitlinear"])
@pytest.mark.parametrize("shape_name", sorted(SHAPES))
def test_packed_checkpoint_agrees(tmp_path, linear_class, shape_name):
    shape = SHAPES[shape_name]
    result = assert_agrees(write_packed(tmp_path / "ckpt", shape, linear_class, seed=len(shape_name)), shape)
    assert result.max_abs_error < 1e-4 * result.max_abs_logit  # a careful implementation is far inside the bound


@pytest.mark.parametrize("shape_name", sorted(SHAPES))
def test_unpacked_checkpoint_agrees(tmp_path, shape_name):
    shape = SHAPES[shape_name]
    assert_agrees(write_unpacked(tmp_path / "ckpt", shape, seed=5), shape)


def test_sharded_checkpoint_loads_the_same(tmp_path):
    shape = SHAPES["gqa-untied"]
    single = write_packed(tmp_path / "single", shape, "bitlinear")
    sharded = write_sharded(tmp_path / "sharded", single, shards=3)
    ids = input_ids(shape.vocab)
    assert torch.equal(edgebit.load(sharded)(ids), edgebit.load(single)(ids))


def test_scale_convention_matters(tmp_path):
    """Reading a bitlinear file as autobitlinear must break agreement: the check can fail."""
    import json

    shape = SHAPES["odd-gqa-tied"]
    directory = write_packed(tmp_path / "ckpt", shape, "bitlinear")
    ids = input_ids(shape.vocab)
    reference = transformers_logits(directory, ids)
    config = json.loads((directory / "config.json").read_text())
    config["quantization_config"]["linear_class"] = "autobitlinear"
    (directory / "config.json").write_text(json.dumps(config))
    assert not compare_logits(edgebit.load(directory)(ids).detach(), reference).passed


def test_kv_cache_decode_matches_full_forward(tmp_path):
    shape = SHAPES["gqa-untied"]
    model = edgebit.load(write_packed(tmp_path / "ckpt", shape, "autobitlinear"))
    ids = input_ids(shape.vocab)
    full = model(ids)
    cache = model.new_cache()
    prefill = model(ids[:, :4], cache)
    steps = [model(ids[:, t:t + 1], cache) for t in range(4, ids.shape[1])]
    torch.testing.assert_close(torch.cat([prefill, *steps], dim=1), full, rtol=1e-5, atol=1e-5)


def test_cosine_bound_gives_way_only_to_the_rounding_noise():
    """0.9999 without rounding noise (an independent reference); with a noise that explains an error of the max-abs
    bound in every logit, the cosine such an error leaves; a scaled or shifted copy beyond the bound still fails."""
    import numpy as np

    from edgebit.validate.agreement import MIN_COSINE, cosine_bound

    reference = np.random.default_rng(0).standard_normal((4, 100)) * 5
    assert cosine_bound(reference.ravel(), 0.0) == MIN_COSINE
    assert cosine_bound(reference.ravel(), 1e-6) == MIN_COSINE  # a small noise leaves the bound as it is
    noisy = reference + np.random.default_rng(1).choice([-1.0, 1.0], reference.shape) * 1.5
    assert not compare_logits(noisy, reference).passed
    assert compare_logits(noisy, reference, rounding_noise=1.0).passed  # 1.5 <= 2 x 1.0 everywhere
    assert not compare_logits(reference * 0.3, reference, rounding_noise=1.0).passed  # errors up to 12 > 2
