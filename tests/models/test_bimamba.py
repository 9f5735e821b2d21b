"""Bi-Mamba in PyTorch against transformers' Mamba2ForCausalLM whose in_proj/out_proj weights are replaced by the
same W_hat = alpha * sign(W) + beta; recurrent decoding against prefill; export keeps the custom operators."""

import pytest
import torch
from mamba_helpers import SHAPES, random_bimamba, transformers_twin


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_matches_transformers_mamba2_with_w_hat(name):
    """The latent model (float activations) against the plain twin, the packed one (int8 activations per plane,
    ops/binary_matmul/SPEC.md) against the twin whose projections compute the SPEC in numpy."""
    model = random_bimamba(SHAPES[name])
    ids = torch.randint(0, model.config.vocab_size, (2, 13), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        float_reference, latent = transformers_twin(model)(ids).logits, model(ids)
        packed_model = model.pack()
        int8_reference, packed = transformers_twin(packed_model)(ids).logits, packed_model(ids)
    for ours, reference in ((latent, float_reference), (packed, int8_reference)):
        assert (ours - reference).abs().max().item() < 1e-3
        assert torch.equal(ours.argmax(-1), reference.argmax(-1))
    assert (packed - latent).abs().max().item() > 1e-4  # the packed model does quantize


def test_prefill_equals_decode_steps():
    model = random_bimamba(SHAPES["groups2"], seed=3).pack()
    ids = torch.randint(0, 80, (2, 12), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        full = model(ids)
        state = model.new_cache(2)
        steps = [model(ids[:, :5], state)] + [model(ids[:, t:t + 1], state) for t in range(5, 12)]
        one_by_one = model.new_cache(2)
        singles = [model(ids[:, t:t + 1], one_by_one) for t in range(12)]
    assert (torch.cat(steps, 1) - full).abs().max().item() < 1e-4
    assert (torch.cat(singles, 1) - full).abs().max().item() < 1e-4


def test_export_keeps_custom_operators():
    model = random_bimamba(SHAPES["groups2"]).pack()
    exported = torch.export.export(model, (torch.randint(0, 80, (1, 6)),))
    targets = [n.target for n in exported.graph.nodes if n.op == "call_function"]
    assert targets.count(torch.ops.edgebit.binary_linear.default) == 2 * model.config.num_hidden_layers
    assert targets.count(torch.ops.edgebit.selective_scan.default) == model.config.num_hidden_layers


def test_trains_with_straight_through_signs():
    model = random_bimamba(SHAPES["groups2"]).train()
    ids = torch.randint(0, 80, (2, 9))
    loss = torch.nn.functional.cross_entropy(model(ids)[:, :-1].reshape(-1, 80), ids[:, 1:].reshape(-1))
    loss.backward()
    layer = model.layers[0].mixer.in_proj
    assert layer.weight.grad.abs().sum() > 0 and layer.alpha.grad.abs().sum() > 0
