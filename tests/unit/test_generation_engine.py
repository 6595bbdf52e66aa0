"""The in-flight batching engine on the real tiny checkpoint (DeepSpeed-wrapped), no server.

The engine is driven step by step, so "arrives while others decode" is exact,
not a matter of timing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch

from ds_triton.devices import Placement
from ds_triton.errors import CapacityError, InvalidInputError
from ds_triton.generation.engine import GenerationEngine
from ds_triton.generation.metrics import CountingMetrics
from ds_triton.generation.model_runner import ModelRunner
from ds_triton.generation.params import SamplingParams
from ds_triton.generation.request import GenerationRequest
from ds_triton.generation.sequence import FinishReason, GenerationOutput
from ds_triton.loading import LoadedModel, load_model
from ds_triton.spec import GenerationSpec, ModelSpec

VERSION_DIR = Path(__file__).resolve().parents[2] / "model_repository/text_generation/1"
PROMPTS = [
    "Hello",
    "The quick brown fox jumps over the lazy dog and keeps running",
    "a b",
    "Ünïcödé text, emoji and 中文 are fine too",
]


@pytest.fixture(scope="module")
def loaded() -> LoadedModel:
    spec = ModelSpec.load(VERSION_DIR)
    if not spec.resolve_checkpoint(VERSION_DIR).is_dir():
        pytest.skip("run `make setup` to create the tiny checkpoint")
    return load_model(spec, VERSION_DIR, Placement("cpu", 1))


@dataclass
class RecordingSink:
    cancelled: bool = False
    outputs: list[GenerationOutput] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)

    def is_cancelled(self) -> bool:
        return self.cancelled

    def send(self, output: GenerationOutput) -> None:
        self.outputs.append(output)

    def fail(self, error: BaseException) -> None:
        self.errors.append(error)

    @property
    def text(self) -> str:
        return "".join(o.text for o in self.outputs)

    @property
    def finished(self) -> bool:
        return bool(self.outputs and self.outputs[-1].final) or bool(self.errors)


def make_engine(loaded: LoadedModel, **options: int) -> GenerationEngine:
    tokenizer = loaded.tokenizer
    runner = ModelRunner(loaded.engine, loaded.module, "cpu", tokenizer.pad_token_id)
    return GenerationEngine(
        runner,
        tokenizer,
        GenerationSpec(**options),
        max_positions=loaded.config.max_position_embeddings,
        eos_token_id=tokenizer.eos_token_id,
        metrics=CountingMetrics(),
    )


def greedy(prompt: str, max_tokens: int, stream: bool = True, **extra: Any) -> GenerationRequest:
    params = SamplingParams(max_tokens=max_tokens, temperature=0.0, **extra)
    return GenerationRequest(prompt, params, stream=stream, exclude_input_in_output=stream)


def run_until_idle(engine: GenerationEngine, limit: int = 2000) -> None:
    for _ in range(limit):
        if engine.in_flight == 0:
            return
        engine.step()
    raise AssertionError("engine did not finish within the step limit")


def hf_greedy(loaded: LoadedModel, prompt: str, max_tokens: int) -> tuple[str, int]:
    """HF ``generate``'s continuation of ``prompt``: its text as it continues the prompt's
    text (a first WordPiece "##" token glues onto the prompt's last word), and its length."""
    tokenizer = loaded.tokenizer
    inputs = tokenizer(prompt, return_tensors="pt")
    with torch.inference_mode():
        out = loaded.module.generate(**inputs, max_new_tokens=max_tokens, do_sample=False)
    full = tokenizer.decode(out[0].tolist(), skip_special_tokens=True)
    prompt_text = tokenizer.decode(inputs["input_ids"][0].tolist(), skip_special_tokens=True)
    return full[len(prompt_text) :], out.shape[1] - inputs["input_ids"].shape[1]


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
    # Force EOS by making it the only token the sampler may pick.
    params = SamplingParams(max_tokens=5, temperature=1.0, top_k=1)
    stopped, ignored = RecordingSink(), RecordingSink()
    engine.submit(GenerationRequest("Hi", params, True, True), stopped)
    engine.submit(GenerationRequest("Hi", SamplingParams(max_tokens=5, temperature=0.0,
                                                         ignore_eos=True), True, True), ignored)
    original = engine.runner.decode

    def eos_everywhere(*args: Any) -> Any:
        logits, cache = original(*args)
        logits = logits.clone()
        logits[:, eos] = 1e4
        return logits, cache

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

    def explode(*args: Any) -> Any:
        raise RuntimeError("simulated device failure")

    engine.runner.decode = explode
    engine.step()
    assert broken.errors and "simulated" in str(broken.errors[0])
    assert engine.in_flight == 0
    engine.runner.decode = original
    healthy = RecordingSink()
    engine.submit(greedy("Hello", 8), healthy)
    run_until_idle(engine)
    assert healthy.text == hf_greedy(loaded, "Hello", 8)[0]


def test_thread_lifecycle_and_shutdown_fails_pending_requests(loaded: LoadedModel) -> None:
    engine = make_engine(loaded, max_concurrent_sequences=1)
    engine.start()
    done = RecordingSink()
    engine.submit(greedy("Hello", 4), done)
    for _ in range(500):
        if done.finished:
            break
        time.sleep(0.01)
    assert done.finished
    engine.stop()
    with pytest.raises(CapacityError, match="shutting down"):
        engine.submit(greedy("late", 4), RecordingSink())


def test_running_batch_pads_joins_and_trims(loaded: LoadedModel) -> None:
    from ds_triton.generation.running_batch import RunningBatch

    tokenizer = loaded.tokenizer
    runner = ModelRunner(loaded.engine, loaded.module, "cpu", tokenizer.pad_token_id)
    long_ids = tokenizer(PROMPTS[1])["input_ids"]
    short_ids = tokenizer(PROMPTS[2])["input_ids"]
    batch = RunningBatch()
    first = runner.prefill([long_ids])
    batch.join(first, [0], first.logits.argmax(-1))
    second = runner.prefill([short_ids])
    batch.join(second, [0], second.logits.argmax(-1))
    assert len(batch) == 2 and batch.length == len(long_ids)
    assert batch.attention_mask[1].sum() == len(short_ids)  # left-padded
    assert batch.next_positions.tolist() == [len(long_ids), len(short_ids)]
    batch.keep([1])  # the long sequence leaves: its history columns go with it
    assert len(batch) == 1 and batch.length == len(short_ids)
    assert bool(batch.attention_mask.all())
    batch.keep([])
    assert len(batch) == 0 and batch.cache is None


def test_the_engine_thread_survives_errors_outside_the_forward_pass(loaded: LoadedModel) -> None:
    class BrokenMetrics(CountingMetrics):
        def occupancy(self, running: int, waiting: int, capacity: int) -> None:
            raise RuntimeError("metrics backend gone")

    engine = make_engine(loaded)
    engine.metrics = BrokenMetrics()
    engine.start()
    try:
        sink = RecordingSink()
        engine.submit(greedy("Hello", 50), sink)
        for _ in range(500):
            if sink.finished:
                break
            time.sleep(0.01)
        assert sink.errors and "metrics backend gone" in str(sink.errors[0])
        assert engine.in_flight == 0
    finally:
        engine.stop()


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
