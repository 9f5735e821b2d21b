"""The exported graph (one step function; the runner owns the KV cache and passes its filled rows) computes what the
eager model computes: prefill equals the full forward, and decode steps continue it exactly."""

import pytest
import torch

import edgebit
from edgebit.models.bitnet.step import AppendCacheStep
from edgebit.models.kv_cache import set_kv_cache_precision
from edgebit.models.step_graph import StepStates, logit_rows, step_graph
from hf_checkpoints import TinyShape, write_packed


@pytest.mark.parametrize("kv_cache", ["fp32", "fp16"])
def test_prefill_and_decode_match_the_eager_model(tmp_path, kv_cache):
    """With an fp16 cache the step's cache tensors are float16 and the eager model rounds its keys and values the
    same way, so the two still agree to float32 precision."""
    model = edgebit.load(write_packed(tmp_path / "ckpt", TinyShape(vocab=64, hidden=48, intermediate=64, heads=4,
                                                                   kv_heads=2, tied=False), "autobitlinear"))
    set_kv_cache_precision(model, kv_cache)
    step = AppendCacheStep(model, max_seq_len=20)
    ids = torch.randint(0, 64, (1, 12), generator=torch.Generator().manual_seed(0))
    full = model(ids)
    logits, *rows = step(ids, torch.tensor([0]), logit_rows(12), *step.empty_prefix())
    torch.testing.assert_close(logits, full, rtol=1e-5, atol=1e-5)
    last, *_ = step(ids, torch.tensor([0]), logit_rows(12, last_only=True), *step.empty_prefix())
    torch.testing.assert_close(last, full[:, -1:], rtol=1e-5, atol=1e-5)  # generate's prefill: the last row alone
    assert len(rows) == 2 * model.config.num_hidden_layers and all(r.shape == (12, 2, 12) for r in rows)
    assert all(r.dtype == (torch.float16 if kv_cache == "fp16" else torch.float32) for r in rows)

    states = StepStates(step_graph(model, 20), torch.from_numpy)  # the runner's buffers of 20 rows
    outputs = []
    for start, stop in [(0, 5), *((t, t + 1) for t in range(5, 12))]:
        out, *new_rows = step(ids[:, start:stop], torch.tensor([start]), logit_rows(stop - start),
                              *states.inputs(start))
        states.update(new_rows, start)
        outputs.append(out)
    torch.testing.assert_close(torch.cat(outputs, dim=1), full, rtol=1e-5, atol=1e-5)
    assert all(b[:12].any() and not b[12:].any() for b in states.buffers)  # rows past the last token stay empty


@pytest.mark.parametrize("kv_cache", ["fp32", "fp16"])
def test_buffer_cache_step_matches_the_eager_model_and_restarts_at_position_zero(tmp_path, kv_cache):
    """The LLM-runner form (caches as buffers written in place): prefill + decode equal the eager model, only the
    slots of written positions change, and a second sequence from position 0 needs no reset."""
    from edgebit.models.bitnet.step import BufferCacheStep

    model = edgebit.load(write_packed(tmp_path / "ckpt", TinyShape(vocab=64, hidden=48, intermediate=64, heads=4,
                                                                   kv_heads=2), "bitlinear"))
    step = BufferCacheStep(set_kv_cache_precision(model, kv_cache), max_seq_len=20)
    generator = torch.Generator().manual_seed(1)
    for length in (12, 9):  # the second sequence overwrites the first one's slots from 0 and ignores the rest
        ids = torch.randint(0, 64, (1, length), generator=generator)
        outputs = [step(ids[:, :5], torch.tensor([0]))]
        outputs += [step(ids[:, t:t + 1], torch.tensor([t])) for t in range(5, length)]
        torch.testing.assert_close(torch.cat(outputs, dim=1), model(ids), rtol=1e-5, atol=1e-5)
    caches = [buffer for name, buffer in step.named_buffers() if "_cache_" in name]
    assert len(caches) == 2 * model.config.num_hidden_layers
    assert all(cache[:, :, :12].any() and not cache[:, :, 12:].any() for cache in caches)


def test_llm_runner_program_takes_a_runner_chunk_per_call(tmp_path):
    """The ExecuTorch program's token count is bounded by the device runners' prefill chunk (its memory is planned
    for the largest call), and its metadata says so: get_max_seq_len is tokens per call, get_max_context_len the
    cache."""
    import re
    from pathlib import Path

    from edgebit.models.bitnet.step import bitnet_llm_step_graph
    from edgebit.models.step_graph import TOKENS_PER_STEP

    header = (Path(edgebit.__file__).parent / "runtimes" / "runner_driver.h").read_text()
    assert int(re.search(r"kPrefillChunk = (\d+);", header).group(1)) == TOKENS_PER_STEP
    model = edgebit.load(write_packed(tmp_path / "ckpt", TinyShape(), "bitlinear"))
    for context, per_call in ((4096, TOKENS_PER_STEP), (32, 32)):
        graph = bitnet_llm_step_graph(model, context)
        assert graph.dynamic_shapes[0][1].max == per_call
        assert (graph.metadata["get_max_seq_len"], graph.metadata["get_max_context_len"]) == (per_call, context)
