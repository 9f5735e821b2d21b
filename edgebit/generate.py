"""Text generation on the host with the KV cache: one prefill pass over the prompt, then one-token decode steps."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from tokenizers import Tokenizer

from edgebit.errors import EdgebitError
from edgebit.sampling import Sampling, SplitMix64, pick

__all__ = ["Sampling", "generate_ids", "generate_text", "load_tokenizer"]  # Sampling: one import for users

TOKENIZER_FILE = "tokenizer.json"


class CheckedTokenizer:
    """A model's tokenizer.json as a :class:`tokenizers.Tokenizer` whose failures are user errors.

    The tokenizers library reports a file it cannot use with a bare ``Exception``, and some damage only when a text
    needs the broken part (a WordLevel model without its unknown token fails on the first unknown word). Loading,
    encoding and decoding here are the one boundary where those become an :class:`EdgebitError` naming the file.
    Every other attribute is the Tokenizer's.
    """

    def __init__(self, path: Path):
        self.path = path
        self.tokenizer = self._call("cannot be read", Tokenizer.from_file, str(path))

    def _call(self, what: str, function, *args):
        try:
            return function(*args)
        except Exception as exc:  # the library raises plain Exception (and ValueError, TypeError...) for a bad file
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            raise EdgebitError(f"{self.path}: {what} ({reason}); restore tokenizer.json from the model's original "
                               "files") from None

    def encode(self, text: str, add_special_tokens: bool = True):
        return self._call("cannot encode the text",
                          lambda: self.tokenizer.encode(text, add_special_tokens=add_special_tokens))

    def encode_batch(self, texts: list[str]):
        return self._call("cannot encode the texts", self.tokenizer.encode_batch, texts)

    def decode(self, ids: list[int]) -> str:
        return self._call("cannot decode the token ids", self.tokenizer.decode, ids)

    def __getattr__(self, name: str):
        return getattr(self.tokenizer, name)


def load_tokenizer(directory: Path) -> CheckedTokenizer:
    path = Path(directory) / TOKENIZER_FILE
    if not path.is_file():
        raise EdgebitError(f"{directory}: no {TOKENIZER_FILE}; generation needs the model's tokenizer beside it "
                           "(or pass token ids with --ids)")
    return CheckedTokenizer(path)


@torch.no_grad()
def generate_ids(model, prompt_ids: list[int], sampling: Sampling, eos_id: int | None = None,
                 on_token: Callable[[int], bool] | None = None) -> list[int]:
    """New token ids after ``prompt_ids`` (prefill once, then decode with the cache), picked as the device runners
    pick them (edgebit.sampling), so a seed gives the same tokens on the host and on a device. ``on_token`` sees
    each token as it is picked and may end generation by returning True (a stop string)."""
    if not prompt_ids:
        raise EdgebitError("the prompt is empty; give at least one token of text")
    rng = SplitMix64(sampling.seed)
    seen = list(prompt_ids)
    cache = model.new_cache()
    logits = model(torch.tensor([prompt_ids]), cache)[0, -1]
    new: list[int] = []
    for _ in range(sampling.max_new_tokens):
        token = pick(logits.float().numpy(), sampling, rng, seen)
        if token == eos_id:
            break
        new.append(token)
        seen.append(token)
        if on_token is not None and on_token(token):
            break
        logits = model(torch.tensor([[token]]), cache)[0, -1]
    return new


def generate_text(model, tokenizer: CheckedTokenizer, prompt: str, sampling: Sampling) -> str:
    prompt_ids = tokenizer.encode(prompt).ids
    eos = getattr(model.config, "eos_token_id", None)
    return tokenizer.decode(generate_ids(model, prompt_ids, sampling, eos))
