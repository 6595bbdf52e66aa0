"""The in-flight batching engine on the real tiny checkpoint (DeepSpeed-wrapped), no server.

The engine is driven step by step, so "arrives while others decode" is exact,
not a matter of timing.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
import torch

from ds_triton.errors import CapacityError, InferenceError, InvalidInputError
from ds_triton.generation.metrics import CountingMetrics
from ds_triton.generation.params import SamplingParams
from ds_triton.generation.request import GenerationRequest
from ds_triton.generation.sequence import FinishReason
from ds_triton.loading import LoadedModel
from ds_triton.profiling import StepTimeline
from tests.unit.generation_support import (
    RecordingSink,
    greedy,
    hf_greedy,
    make_engine,
    run_until_idle,
    wait_for,
)

PROMPTS = [
    "Hello",
    "The quick brown fox jumps over the lazy dog and keeps running",
    "a b",
    "Ünïcödé text, emoji and 中文 are fine too",
]


def test_greedy_alone_matches_hf_generate(loaded: LoadedModel) -> None:
    engine = make_engine(loaded)
    sink = RecordingSink()
    engine.submit(greedy(PROMPTS[1], 20), sink)
    run_until_idle(engine)
    text, count = hf_greedy(loaded, PROMPTS[1], 20)
    assert sink.text == text
    assert sum(o.num_output_tokens for o in sink.outputs) == count == 20
    assert sink.outputs[-1].finish_reason is FinishReason.LENGTH


def test_staggered_batch_matches_hf_generate_and_shares_forward_passes(loaded: LoadedModel) -> None:
    engine = make_engine(loaded)
    sinks = [RecordingSink() for _ in PROMPTS]
    lengths = [24, 9, 30, 17]
    for prompt, sink, length in zip(PROMPTS, sinks, lengths, strict=True):
        engine.submit(greedy(prompt, length), sink)
        engine.step()  # the next request arrives while the others decode
        engine.step()
    run_until_idle(engine)
    for prompt, sink, length in zip(PROMPTS, sinks, lengths, strict=True):
        assert sink.text == hf_greedy(loaded, prompt, length)[0], prompt
    metrics = engine.metrics
    assert isinstance(metrics, CountingMetrics)
    assert metrics.tokens == sum(lengths)
    assert metrics.max_running == len(PROMPTS)
    # One decode pass per step for everyone: about max(lengths) passes, not sum(lengths).
    assert sum(metrics.forward_passes.values()) <= max(lengths) + 2 * len(PROMPTS)


def test_non_streaming_returns_one_response_with_the_prompt(loaded: LoadedModel) -> None:
    engine = make_engine(loaded)
    sink = RecordingSink()
    engine.submit(greedy("Hello", 6, stream=False), sink)
    run_until_idle(engine)
    assert len(sink.outputs) == 1 and sink.outputs[0].final
    assert sink.outputs[0].text == "Hello" + hf_greedy(loaded, "Hello", 6)[0]
    assert sink.outputs[0].num_output_tokens == 6


def test_cancelled_sequence_leaves_at_the_next_step(loaded: LoadedModel) -> None:
    engine = make_engine(loaded, max_concurrent_sequences=1, max_queued_requests=0)
    first = RecordingSink()
    engine.submit(greedy("Hello", 200), first)
    engine.step()
    with pytest.raises(CapacityError, match="too many concurrent requests"):
        engine.submit(greedy("Hi", 4), RecordingSink())
    first.cancelled = True
    engine.step()
    assert first.outputs[-1].finish_reason is FinishReason.CANCELLED
    assert engine.in_flight == 0
    second = RecordingSink()
    engine.submit(greedy("Hi", 4), second)
    run_until_idle(engine)
    assert second.outputs[-1].finish_reason is FinishReason.LENGTH


def test_queued_requests_wait_for_a_free_slot(loaded: LoadedModel) -> None:
    engine = make_engine(loaded, max_concurrent_sequences=2, max_queued_requests=2)
    sinks = [RecordingSink() for _ in range(4)]
    for sink in sinks:
        engine.submit(greedy("Hello there", 5), sink)
    with pytest.raises(CapacityError):
        engine.submit(greedy("one too many", 5), RecordingSink())
    engine.step()
    assert isinstance(engine.metrics, CountingMetrics) and engine.metrics.max_running == 2
    run_until_idle(engine)
    assert all(s.outputs[-1].finish_reason is FinishReason.LENGTH for s in sinks)


def test_requests_that_end_on_their_first_token_give_back_their_row_and_tokens(loaded: LoadedModel) -> None:
    # They once stayed admitted for good: 16 max_tokens=1 requests made the shipped model
    # queue every later request until its client's deadline.
    inputs = loaded.tokenizer("Hello there", return_tensors="pt")
    with torch.inference_mode():
        first = int(loaded.module(**inputs).logits[0, -1].argmax())
    engine = make_engine(loaded, max_concurrent_sequences=2, max_queued_requests=8)
    requests = [greedy("Hello there", 1) for _ in range(3)]
    requests += [greedy("Hello there", 5, stop_token_ids=(first,)) for _ in range(3)]
    sinks = [RecordingSink() for _ in requests]
    for request, sink in zip(requests, sinks, strict=True):
        engine.submit(request, sink)
    run_until_idle(engine, limit=50)
    assert [s.outputs[-1].finish_reason for s in sinks] == [FinishReason.LENGTH] * 3 + [FinishReason.STOP] * 3
    assert (engine.in_flight, engine.reserved_tokens) == (0, 0)
    after = RecordingSink()
    engine.submit(greedy("Hello there", 5), after)
    run_until_idle(engine, limit=50)
    assert sum(o.num_output_tokens for o in after.outputs) == 5


def test_stop_string_ends_the_stream_without_it(loaded: LoadedModel) -> None:
    engine = make_engine(loaded)
    reference, _ = hf_greedy(loaded, PROMPTS[0], 12)
    stop = reference.split()[2]
    sink = RecordingSink()
    engine.submit(greedy(PROMPTS[0], 12, stop=(stop,)), sink)
    run_until_idle(engine)
    assert sink.outputs[-1].finish_reason is FinishReason.STOP
    assert stop not in sink.text
    assert sink.text == reference[: reference.index(stop)]


def test_eos_ends_a_sequence_unless_ignored(loaded: LoadedModel) -> None:
    engine = make_engine(loaded)
    eos = loaded.tokenizer.eos_token_id
    # Every decode step puts EOS far ahead of the other logits (eos_everywhere below), and
    # top_k=1 makes the sampled sequence take the top token, so its second token is EOS.
    params = SamplingParams(max_tokens=5, temperature=1.0, top_k=1)
    stopped, ignored = RecordingSink(), RecordingSink()
    engine.submit(GenerationRequest("Hi", params, True, True), stopped)
    engine.submit(GenerationRequest("Hi", SamplingParams(max_tokens=5, temperature=0.0,
                                                         ignore_eos=True), True, True), ignored)
    original = engine.runner.decode

    def eos_everywhere(*args: Any, **kwargs: Any) -> Any:
        logits = original(*args, **kwargs).clone()
        logits[:, eos] = 1e4
        return logits

    engine.runner.decode = eos_everywhere
    run_until_idle(engine)
    assert stopped.outputs[-1].finish_reason is FinishReason.STOP
    assert sum(o.num_output_tokens for o in stopped.outputs) == 2  # first token, then EOS
    assert ignored.outputs[-1].finish_reason is FinishReason.LENGTH


def test_seeded_sampling_is_reproducible_and_batch_independent(loaded: LoadedModel) -> None:
    def sample(with_company: bool) -> str:
        engine = make_engine(loaded)
        sink = RecordingSink()
        params = SamplingParams(max_tokens=12, temperature=0.9, top_p=0.9, top_k=50, seed=7)
        engine.submit(GenerationRequest("Once upon", params, True, True), sink)
        if with_company:
            engine.submit(greedy("Other text entirely", 12), RecordingSink())
        run_until_idle(engine)
        return sink.text

    assert sample(False) == sample(True)


def test_prompt_and_context_limits(loaded: LoadedModel) -> None:
    engine = make_engine(loaded, max_prompt_tokens=8, max_tokens_limit=2000)
    with pytest.raises(InvalidInputError, match="at most 8 prompt tokens"):
        engine.submit(greedy("one two three four five six seven eight nine", 4), RecordingSink())
    with pytest.raises(InvalidInputError, match="max_tokens"):
        engine.submit(greedy("short", 1500), RecordingSink())
    assert engine.in_flight == 0


def test_a_failing_forward_fails_its_sequences_and_the_engine_recovers(loaded: LoadedModel) -> None:
    engine = make_engine(loaded)
    broken = RecordingSink()
    engine.submit(greedy("Hello", 8), broken)
    original = engine.runner.decode

    def explode(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("simulated device failure")

    engine.runner.decode = explode
    engine.step()  # prefill: the first token
    engine.step()  # the decode forward fails
    (error,) = broken.errors
    assert isinstance(error, InferenceError)  # INTERNAL, with what failed and why
    assert "decode forward pass failed (RuntimeError: simulated device failure)" in str(error)
    assert engine.in_flight == 0
    engine.runner.decode = original
    healthy = RecordingSink()
    engine.submit(greedy("Hello", 8), healthy)
    run_until_idle(engine)
    assert healthy.text == hf_greedy(loaded, "Hello", 8)[0]


def test_thread_lifecycle_and_shutdown_fails_pending_requests(loaded: LoadedModel) -> None:
    engine = make_engine(loaded, max_concurrent_sequences=1)
    engine.start()
    done, running, queued = RecordingSink(), RecordingSink(), RecordingSink()
    engine.submit(greedy("Hello", 4), done)
    wait_for(lambda: done.finished)
    engine.submit(greedy("Hello", 500, ignore_eos=True), running)
    engine.submit(greedy("queued behind it", 4), queued)
    wait_for(lambda: bool(running.outputs))  # decoding, with one request waiting for its row
    assert engine.stop() is True
    for sink in (running, queued):
        assert len(sink.errors) == 1 and isinstance(sink.errors[0], CapacityError)
        assert "unloaded" in str(sink.errors[0])
    assert engine.in_flight == 0 and engine.reserved_tokens == 0
    assert not any(t.name == "generation-engine" for t in threading.enumerate())
    with pytest.raises(CapacityError, match="shutting down"):
        engine.submit(greedy("late", 4), RecordingSink())


class FakeTokenizer:
    """Each token id is one character: id 0 is EOS, ids 1.. are letters."""

    def decode(self, ids: list[int], **_: Any) -> str:
        return "".join(chr(ord("a") + i - 1) for i in ids if i)


def feed(params: SamplingParams, tokens: list[int]) -> RecordingSink:
    from ds_triton.generation.sequence import Sequence

    sink = RecordingSink()
    sequence = Sequence(GenerationRequest("p", params, True, True), [1], sink, FakeTokenizer(), 0)
    for token in tokens:
        sequence.accept(token)
        if sequence.finished:
            break
    return sink


def test_text_held_for_a_stop_string_is_released_at_eos() -> None:
    sink = feed(SamplingParams(max_tokens=10, stop=("xyz",)), [1, 24, 0])  # "a", "x", EOS
    assert sink.text == "ax" and sink.outputs[-1].finish_reason is FinishReason.STOP


def test_stop_strings_count_only_after_min_tokens() -> None:
    params = SamplingParams(max_tokens=10, stop=("b",), min_tokens=2)
    sink = feed(params, [2, 1, 2, 3])  # "b" (too early), "a", "b" -> stop
    assert sink.text == "ba" and sink.outputs[-1].finish_reason is FinishReason.STOP


def test_prompts_prefilled_together_match_hf_generate(loaded: LoadedModel) -> None:
    engine = make_engine(loaded)
    sinks = [RecordingSink() for _ in PROMPTS]
    for prompt, sink in zip(PROMPTS, sinks, strict=True):
        engine.submit(greedy(prompt, 15), sink)
    run_until_idle(engine)
    assert isinstance(engine.metrics, CountingMetrics)
    assert engine.metrics.forward_passes["prefill"] == 1  # one left-padded pass for all four
    for prompt, sink in zip(PROMPTS, sinks, strict=True):
        assert sink.text == hf_greedy(loaded, prompt, 15)[0], prompt


LONG_PROMPT = " ".join(["the quick brown fox jumps over the lazy dog"] * 5)


def test_a_long_prompt_is_prefilled_in_chunks_while_running_streams_keep_decoding(
    loaded: LoadedModel,
) -> None:
    metrics = CountingMetrics()
    engine = make_engine(loaded, metrics=metrics, max_prefill_tokens=8)
    running = RecordingSink()
    engine.submit(greedy("Hello", 40), running)
    engine.step()  # its prompt is prefilled: it decodes from the next step on
    long = RecordingSink()
    engine.submit(greedy(LONG_PROMPT, 10), long)
    prompt_tokens = len(loaded.tokenizer(LONG_PROMPT)["input_ids"])
    chunks = -(-prompt_tokens // 8)
    for step in range(chunks):
        before = len(running.outputs)
        engine.step()
        assert len(running.outputs) == before + 1, f"no token for the running stream at step {step}"
        assert (len(long.outputs) == 1) == (step == chunks - 1)  # first token with the last chunk
    assert metrics.forward_passes["prefill"] == 1 + chunks
    run_until_idle(engine)
    assert long.text == hf_greedy(loaded, LONG_PROMPT, 10)[0]
    assert running.text == hf_greedy(loaded, "Hello", 40)[0]


def test_admission_waits_for_the_token_budget(loaded: LoadedModel) -> None:
    # Prompt (2 tokens) + max_tokens (30) = 32 tokens reserved per request: two fit in 70,
    # though three cache rows are free.
    engine = make_engine(
        loaded,
        max_batch_total_tokens=70,
        max_prompt_tokens=8,
        max_tokens_limit=32,
        max_concurrent_sequences=3,
        max_queued_requests=1,
    )
    sinks = [RecordingSink() for _ in range(4)]
    for sink in sinks:
        engine.submit(greedy("Hello", 30), sink)
    with pytest.raises(CapacityError, match="too many concurrent requests"):
        engine.submit(greedy("Hello", 30), RecordingSink())  # rows + queue are all taken
    engine.step()
    assert engine.reserved_tokens == 64 and not sinks[2].outputs
    while not sinks[0].finished:
        engine.step()
    engine.step()  # the freed tokens admit the waiting request
    assert sinks[2].outputs and engine.reserved_tokens <= 70
    run_until_idle(engine)
    assert all(s.outputs[-1].finish_reason is FinishReason.LENGTH for s in sinks)
    assert engine.reserved_tokens == 0


def test_joins_and_leaves_write_into_the_preallocated_cache_in_place(loaded: LoadedModel) -> None:
    engine = make_engine(loaded, max_concurrent_sequences=4)
    cache = engine._batch.cache
    engine.submit(greedy("Hello", 30), RecordingSink())
    engine.step()
    layer = cache.slot_layers[0]
    assert layer.keys is not None
    buffer, allocated = layer.keys.data_ptr(), cache.allocated_bytes
    held = engine._batch._host_lengths[0]
    history = layer.keys[0, :, :held].clone()
    for prompt in PROMPTS[1:]:  # three joins while the first sequence decodes
        engine.submit(greedy(prompt, 3), RecordingSink())
        engine.step()
        assert layer.keys.data_ptr() == buffer and cache.allocated_bytes == allocated
        assert torch.equal(layer.keys[0, :, :held], history)  # the running row was not rewritten
    run_until_idle(engine)
    assert layer.keys.data_ptr() == buffer
    # rows x tokens x (K, V) x layers x kv heads x head size x fp32 bytes
    assert allocated == 4 * engine.row_tokens * 2 * 2 * 2 * 8 * 4


def test_the_step_timeline_records_every_step(loaded: LoadedModel, tmp_path: Path) -> None:
    timeline = StepTimeline(tmp_path / "g.steps.jsonl")
    engine = make_engine(loaded, timeline=timeline)
    engine.submit(greedy("Hello", 3), RecordingSink())
    engine.step()
    engine.submit(greedy("a b", 2), RecordingSink())
    run_until_idle(engine)
    timeline.close()
    records = [json.loads(line) for line in timeline.path.read_text().splitlines()]
    assert [r["phase"] for r in records] == ["prefill", "mixed", "decode"]
    assert [r["rows"] for r in records] == [1, 2, 2]
    assert records[0]["tokens"] == 2 and all(r["forward_ms"] > 0 for r in records)
    assert records[1]["gap_ms"] >= 0


def test_the_engine_thread_decodes_with_its_own_tokenizer(loaded: LoadedModel) -> None:
    engine = make_engine(loaded)
    sink = RecordingSink()
    engine.submit(greedy("Hello", 3), sink)
    assert engine._decoding_tokenizer is not engine.tokenizer  # prompts are encoded with the other
    run_until_idle(engine)
    assert sink.text == hf_greedy(loaded, "Hello", 3)[0]


def test_the_gpu_way_of_one_token_copy_per_step_gives_the_same_streams(loaded: LoadedModel) -> None:
    """On a GPU the first tokens wait for the decode forward's copy; tested here on the CPU."""
    engine = make_engine(loaded, max_prefill_tokens=8)
    engine.early_first_tokens = False
    sinks = [RecordingSink() for _ in PROMPTS]
    for prompt, sink in zip(PROMPTS, sinks, strict=True):
        engine.submit(greedy(prompt, 12), sink)
        engine.step()
    run_until_idle(engine)
    for prompt, sink in zip(PROMPTS, sinks, strict=True):
        assert sink.text == hf_greedy(loaded, prompt, 12)[0], prompt
