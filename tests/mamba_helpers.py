"""Tiny Mamba-2 / Bi-Mamba models shared by the tests: transformers' Mamba2ForCausalLM (the public layout
edgebit binarizes) and its twin whose in/out_proj weights are a Bi-Mamba's W_hat, and random Bi-Mamba models."""

import torch
from transformers import Mamba2Config, Mamba2ForCausalLM

from edgebit.models.bimamba.model import BiMambaConfig, BiMambaForCausalLM

HF = dict(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_heads=8, head_dim=8, state_size=16, expand=2,
          n_groups=2, conv_kernel=4, tie_word_embeddings=True, chunk_size=4)


def hf_mamba2(seed=0):
    torch.manual_seed(seed)
    model = Mamba2ForCausalLM(Mamba2Config(**HF)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("dt_bias", "D")):
                p.normal_(0.5, 0.3)
    return model


def with_w_hat(hf_model, w_hat: dict):
    """A copy of a transformers Mamba2 whose in/out_proj weights are replaced (keys: backbone.layers.i.mixer.X)."""
    twin = Mamba2ForCausalLM(hf_model.config).eval()
    state = {k: v.clone() for k, v in hf_model.state_dict().items()}
    for key, value in w_hat.items():
        state[key + ".weight"] = value.float()
    twin.load_state_dict(state)
    return twin


def w_hat_of(model) -> dict:
    """A Bi-Mamba's W_hat per in/out_proj, keyed as transformers' Mamba2 names them (for :func:`with_w_hat`)."""
    return {f"backbone.layers.{i}.mixer.{p}": getattr(block.mixer, p).dense_weight()
            for i, block in enumerate(model.layers) for p in ("in_proj", "out_proj")}


def binarized_twin(hf_model, binarized):
    """``hf_model`` with the W_hat of ``binarized`` (a Bi-Mamba made from it) and its embeddings (a binarized
    checkpoint stores them in float16: the twin uses the same)."""
    twin = with_w_hat(hf_model, w_hat_of(binarized))
    with torch.no_grad():
        twin.backbone.embeddings.weight.copy_(binarized.embeddings.weight)
    return twin


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
