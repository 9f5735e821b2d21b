"""Bi-Mamba in PyTorch against transformers' Mamba2ForCausalLM whose in_proj/out_proj weights are replaced by the
same W_hat = alpha * sign(W) + beta; recurrent decoding against prefill; export keeps the custom operators."""

import pytest
import torch
from transformers import Mamba2Config, Mamba2ForCausalLM

from edgebit.models.bimamba.model import BiMambaConfig, BiMambaForCausalLM

SHAPES = {"groups2": dict(vocab_size=80, hidden_size=32, num_hidden_layers=2, num_heads=8, head_dim=8,
                          state_size=16, expand=2, n_groups=2, conv_kernel=4),
          "groups1-odd": dict(vocab_size=57, hidden_size=24, num_hidden_layers=3, num_heads=6, head_dim=8,
                              state_size=12, expand=2, n_groups=1, conv_kernel=3)}


def random_bimamba(shape, seed=0):
    torch.manual_seed(seed)
    model = BiMambaForCausalLM(BiMambaConfig(**shape)).eval()
    with torch.no_grad():
        for layer in model.binary_layers().values():
            layer.alpha.uniform_(0.02, 0.1)
            layer.beta.normal_(0, 0.02)
        for block in model.layers:
            block.mixer.dt_bias.normal_(0, 0.5)
            block.mixer.D.normal_(1, 0.2)
            block.mixer.conv1d.weight.normal_(0, 0.3)
            block.norm.weight.normal_(1, 0.1)
    return model


def transformers_twin(model):
    """transformers' Mamba2 with every weight copied and in_proj/out_proj set to W_hat."""
    c = model.config
    hf = Mamba2ForCausalLM(Mamba2Config(vocab_size=c.vocab_size, hidden_size=c.hidden_size,
                                        num_hidden_layers=c.num_hidden_layers, num_heads=c.num_heads,
                                        head_dim=c.head_dim, state_size=c.state_size, expand=c.expand,
                                        n_groups=c.n_groups, conv_kernel=c.conv_kernel, tie_word_embeddings=True,
                                        chunk_size=4, layer_norm_epsilon=c.layer_norm_epsilon)).eval()
    state = {"backbone.embeddings.weight": model.embeddings.weight, "backbone.norm_f.weight": model.norm_f.weight}
    for i, block in enumerate(model.layers):
        prefix = f"backbone.layers.{i}."
        state[prefix + "norm.weight"] = block.norm.weight
        mixer = dict(block.mixer.named_parameters())
        for name in ("conv1d.weight", "conv1d.bias", "dt_bias", "A_log", "D", "norm.weight"):
            state[prefix + "mixer." + name] = mixer[name]
        state[prefix + "mixer.in_proj.weight"] = block.mixer.in_proj.dense_weight()
        state[prefix + "mixer.out_proj.weight"] = block.mixer.out_proj.dense_weight()
    result = hf.load_state_dict({k: v.detach().clone() for k, v in state.items()}, strict=False)
    assert not result.unexpected_keys and set(result.missing_keys) <= {"lm_head.weight"}
    return hf


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_matches_transformers_mamba2_with_w_hat(name):
    model = random_bimamba(SHAPES[name])
    hf = transformers_twin(model)
    ids = torch.randint(0, model.config.vocab_size, (2, 13), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        reference = hf(ids).logits
        latent = model(ids)
        packed = model.pack()(ids)
    for ours in (latent, packed):
        assert (ours - reference).abs().max().item() < 1e-3
        assert torch.equal(ours.argmax(-1), reference.argmax(-1))


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
