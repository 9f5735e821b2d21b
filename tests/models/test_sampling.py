"""The host sampler (edgebit.generate): next-token frequencies against a numpy softmax with temperature and top-k,
greedy decoding, seeded reproducibility, stopping at EOS, and the CLI's seed option on the demo model."""

import numpy as np
import pytest
import torch

import edgebit
from cli_helpers import run_cli
from edgebit.cli import EMBEDDED_MODELS
from edgebit.generate import Sampling, generate_ids, load_tokenizer

LOGITS = np.array([2.0, 1.5, 0.3, -1.0, 1.9, 0.0, -0.5, 1.0], dtype=np.float32)


class FixedLogits:
    """A stand-in model: the same next-token logits after every prefix, or a scripted sequence of argmaxes."""

    def __init__(self, logits=LOGITS, script=None):
        self.logits, self.script, self.calls = torch.tensor(logits), script, []

    def new_cache(self):
        return []

    def __call__(self, ids, cache):
        self.calls.append(ids.tolist())
        cache.append(ids)
        step = len(cache) - 1
        logits = self.logits.clone()
        if self.script is not None:
            logits = torch.full_like(logits, -10.0)
            logits[self.script[min(step, len(self.script) - 1)]] = 10.0
        return logits.expand(1, ids.shape[1], -1)


def numpy_distribution(logits, temperature, top_k):
    z = logits.astype(np.float64) / temperature
    if 0 < top_k < len(z):
        z = np.where(z >= np.sort(z)[-top_k], z, -np.inf)
    p = np.exp(z - z.max())
    return p / p.sum()


@pytest.mark.parametrize("temperature,top_k", [(1.0, 0), (0.7, 3), (1.5, 5)])
def test_next_token_frequencies_match_numpy(temperature, top_k):
    draws = 20000
    tokens = generate_ids(FixedLogits(), [1, 2, 3], Sampling(draws, temperature, top_k, seed=7))
    assert len(tokens) == draws
    freq = np.bincount(tokens, minlength=len(LOGITS)) / draws
    expected = numpy_distribution(LOGITS, temperature, top_k)
    assert np.abs(freq - expected).max() < 0.015, (freq, expected)  # 4 sigma of a 20000-draw frequency
    assert (freq[expected == 0] == 0).all()  # nothing outside the top k, ever


def test_greedy_is_argmax():
    assert generate_ids(FixedLogits(), [5], Sampling(6, 0.0, 40, seed=3)) == [int(LOGITS.argmax())] * 6


def test_prefill_once_then_one_token_steps():
    model = FixedLogits()
    new = generate_ids(model, [4, 5, 6], Sampling(3, 0.0, 0, 0))
    assert model.calls[:3] == [[[4, 5, 6]], [[new[0]]], [[new[1]]]]
    assert all(len(call[0]) == 1 for call in model.calls[1:])


def test_same_seed_same_tokens_other_seed_differs():
    model = FixedLogits()
    first = generate_ids(model, [1], Sampling(64, 1.0, 0, seed=11))
    assert generate_ids(model, [1], Sampling(64, 1.0, 0, seed=11)) == first
    assert generate_ids(model, [1], Sampling(64, 1.0, 0, seed=12)) != first


def test_stops_at_eos_without_emitting_it():
    model = FixedLogits(script=[3, 6, 2, 1, 5])
    assert generate_ids(model, [0], Sampling(10, 0.0, 0, 0), eos_id=1) == [3, 6, 2]
    assert generate_ids(model, [0], Sampling(10, 0.0, 0, 0), eos_id=None) == [3, 6, 2, 1, 5, 5, 5, 5, 5, 5]


def test_empty_prompt_is_a_user_error():
    from edgebit.errors import EdgebitError

    with pytest.raises(EdgebitError, match="empty"):
        generate_ids(FixedLogits(), [], Sampling())


@pytest.mark.slow  # generates with the demo model through the CLI
def test_demo_seeded_sampling_reproducible():
    model = edgebit.load(EMBEDDED_MODELS["demo"])
    prompt = load_tokenizer(EMBEDDED_MODELS["demo"]).encode("A list is").ids
    a = generate_ids(model, prompt, Sampling(16, 0.8, 40, seed=5))
    assert generate_ids(model, prompt, Sampling(16, 0.8, 40, seed=5)) == a
    assert generate_ids(model, prompt, Sampling(16, 0.8, 40, seed=6)) != a


@pytest.mark.slow  # generates with the demo model through the CLI
def test_cli_seed_and_top_k():
    args = ("generate", "demo", "--prompt", "A list is", "-n", "12", "--temperature", "1.0", "--top-k", "20")
    one = run_cli(*args, "--seed", "3", check=True).stdout
    assert run_cli(*args, "--seed", "3", check=True).stdout == one
    assert run_cli(*args, "--seed", "4", check=True).stdout != one


def test_splitmix64_matches_the_published_sequence():
    """Vigna's reference splitmix64.c seeded with 0 (the device runners implement the same generator)."""
    from edgebit.sampling import SplitMix64

    rng = SplitMix64(0)
    assert [rng.next() for _ in range(3)] == [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F]


@pytest.mark.parametrize("top_p", [0.5, 0.8, 0.95])
def test_top_p_frequencies_match_numpy(top_p):
    draws = 20000
    tokens = generate_ids(FixedLogits(), [1], Sampling(draws, 1.0, 0, seed=3, top_p=top_p))
    freq = np.bincount(tokens, minlength=len(LOGITS)) / draws
    p = numpy_distribution(LOGITS, 1.0, 0)
    order = np.argsort(-p, kind="stable")
    keep = order[:np.searchsorted(np.cumsum(p[order]), top_p) + 1]  # the smallest set reaching top_p
    expected = np.zeros_like(p)
    expected[keep] = p[keep] / p[keep].sum()
    assert np.abs(freq - expected).max() < 0.015, (freq, expected)
    assert (freq[expected == 0] == 0).all()


def test_repetition_penalty_lowers_seen_tokens():
    """Greedy with a penalty: the argmax token (seen in the prompt) loses to the runner-up once divided by 1.5."""
    best, second = int(np.argsort(-LOGITS)[0]), int(np.argsort(-LOGITS)[1])
    assert generate_ids(FixedLogits(), [best], Sampling(1, 0.0, 0, 0, repetition_penalty=1.5)) == [second]
    assert generate_ids(FixedLogits(), [best], Sampling(1, 0.0, 0, 0)) == [best]
    # negative logits are multiplied: a seen token with logit -1.0 becomes -1.5
    from edgebit.sampling import SplitMix64, pick

    logits = np.array([-1.0, -1.2], np.float32)
    assert pick(logits, Sampling(1, 0.0, 0, 0, repetition_penalty=1.5), SplitMix64(0), [0]) == 1


@pytest.mark.parametrize("bad", [dict(top_p=0.0), dict(top_p=1.5), dict(repetition_penalty=0.0),
                                 dict(temperature=-1.0), dict(seed=-1)])
def test_bad_sampling_settings_are_user_errors(bad):
    from edgebit.errors import EdgebitError

    with pytest.raises(EdgebitError):
        Sampling(**bad)
