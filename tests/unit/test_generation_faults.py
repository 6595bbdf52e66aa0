"""Engine error paths: whatever fails, requests end once, capacity comes back, the thread lives.

Each test injects one failure where the engine used to be fragile: metrics, the
code between forward passes, delivering a token, and a stop whose join times out.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from ds_triton.errors import CapacityError
from ds_triton.generation.metrics import CountingMetrics
from ds_triton.generation.sequence import FinishReason
from ds_triton.loading import LoadedModel
from tests.unit.generation_support import (
    RecordingSink,
    greedy,
    hf_greedy,
    make_engine,
    run_until_idle,
    wait_for,
)


class BrokenMetrics(CountingMetrics):
    """Every callback raises, as a metrics backend that went away would."""

    def __getattribute__(self, name: str) -> Any:
        if name in ("forward_pass", "tokens_generated", "first_token", "occupancy", "kv_tokens",
                    "sequence_finished"):  # fmt: skip
            raise RuntimeError("metrics backend gone")
        return super().__getattribute__(name)


def test_failing_metrics_fail_no_request_and_leak_no_capacity(loaded: LoadedModel) -> None:
    engine = make_engine(loaded, metrics=BrokenMetrics(), max_concurrent_sequences=1, max_queued_requests=0)
    engine.start()
    try:
        for prompt in ("Hello", "a b"):  # the second needs the row the first gave back
            sink = RecordingSink()
            engine.submit(greedy(prompt, 12), sink)
            wait_for(lambda sink=sink: sink.finished)  # type: ignore[misc]
            assert not sink.errors
            assert sink.text == hf_greedy(loaded, prompt, 12)[0]
            wait_for(lambda: engine.in_flight == 0)
        assert engine.reserved_tokens == 0
    finally:
        engine.stop()


def test_the_engine_thread_survives_an_exception_between_forward_passes(loaded: LoadedModel) -> None:
    engine = make_engine(loaded)
    original = engine._admit
    calls = {"n": 0}

    def admit_once_broken() -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("scheduler bug")
        original()

    engine._admit = admit_once_broken  # type: ignore[method-assign]
    engine.start()
    try:
        first = RecordingSink()
        engine.submit(greedy("Hello", 8), first)
        wait_for(lambda: first.finished)
        assert "scheduler bug" in str(first.errors[0])  # what was in flight fails, once
        second = RecordingSink()
        engine.submit(greedy("Hello", 8), second)  # the same thread serves the next one
        wait_for(lambda: second.finished)
        assert not second.errors and second.text == hf_greedy(loaded, "Hello", 8)[0]
        assert engine.in_flight == 0 and engine.reserved_tokens == 0
    finally:
        engine.stop()


def test_failing_everything_twice_does_not_kill_the_thread(loaded: LoadedModel) -> None:
    """A failure while failing everything (here: every metric call raises as the victims
    are released) must not end the loop; new requests are still served."""
    engine = make_engine(loaded, metrics=BrokenMetrics())
    original = engine._admit
    calls = {"n": 0}

    def broken_twice() -> None:
        calls["n"] += 1
        if calls["n"] <= 2:
            raise RuntimeError("scheduler bug")
        original()

    engine._admit = broken_twice  # type: ignore[method-assign]
    engine.start()
    try:
        for _ in range(2):
            sink = RecordingSink()
            engine.submit(greedy("Hello", 4), sink)
            wait_for(lambda sink=sink: sink.finished)  # type: ignore[misc]
        survivor = RecordingSink()
        engine.submit(greedy("Hello", 4), survivor)
        wait_for(lambda: survivor.finished)
        assert not survivor.errors
    finally:
        engine.stop()


def test_a_token_that_cannot_be_delivered_fails_only_its_sequence(loaded: LoadedModel) -> None:
    engine = make_engine(loaded)
    victim, bystander = RecordingSink(), RecordingSink()
    engine.submit(greedy("Hello", 10), victim)
    engine.submit(greedy("a b", 10), bystander)
    engine.step()
    (sequence,) = [s for s in engine._batch.running_sequences() if s.sink is victim]

    def broken_accept(token: int, logprobs: object = None) -> None:
        raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")

    sequence.accept = broken_accept  # type: ignore[method-assign]
    run_until_idle(engine)
    assert len(victim.errors) == 1 and isinstance(victim.errors[0], UnicodeDecodeError)
    assert sequence.finish_reason is FinishReason.ERROR
    assert not bystander.errors and bystander.text == hf_greedy(loaded, "a b", 10)[0]
    assert engine.in_flight == 0 and engine.reserved_tokens == 0


def test_stop_leaves_the_state_alone_while_a_forward_pass_is_still_running(loaded: LoadedModel) -> None:
    engine = make_engine(loaded)
    original = engine.runner.decode
    in_forward, release = threading.Event(), threading.Event()

    def slow_decode(*args: Any, **kwargs: Any) -> Any:
        in_forward.set()
        release.wait(60)
        return original(*args, **kwargs)

    engine.runner.decode = slow_decode  # type: ignore[method-assign]
    engine.start()
    sink = RecordingSink()
    engine.submit(greedy("Hello", 50), sink)
    assert in_forward.wait(60)
    assert engine.stop(timeout=0.05) is False  # the join timed out
    assert not sink.errors and engine.in_flight == 1  # untouched while the forward runs
    release.set()
    assert engine.stop(timeout=60) is True
    # The engine thread failed it itself, exactly once, after its forward returned.
    assert len(sink.errors) == 1 and isinstance(sink.errors[0], CapacityError)
    assert not (sink.outputs and sink.outputs[-1].final)
    assert engine.in_flight == 0


def test_drain_finishes_accepted_requests_and_refuses_new_ones(loaded: LoadedModel) -> None:
    engine = make_engine(loaded, max_concurrent_sequences=2)
    engine.start()
    sinks = [RecordingSink() for _ in range(4)]  # two run, two wait for a row
    for sink in sinks:
        engine.submit(greedy("Hello", 30, ignore_eos=True), sink)
    try:
        assert engine.drain(timeout=120) is True
        with pytest.raises(CapacityError, match="shutting down"):
            engine.submit(greedy("late", 4), RecordingSink())
        for sink in sinks:
            assert not sink.errors and sink.outputs[-1].finish_reason is FinishReason.LENGTH
            assert sum(o.num_output_tokens for o in sink.outputs) == 30
    finally:
        assert engine.stop() is True


def test_drain_gives_up_at_its_timeout(loaded: LoadedModel) -> None:
    engine = make_engine(loaded)
    original = engine.runner.decode
    release = threading.Event()

    def stuck(*args: Any, **kwargs: Any) -> Any:
        release.wait(60)
        return original(*args, **kwargs)

    engine.runner.decode = stuck  # type: ignore[method-assign]
    engine.start()
    sink = RecordingSink()
    engine.submit(greedy("Hello", 5), sink)
    try:
        assert engine.drain(timeout=0.2) is False
    finally:
        release.set()
        engine.stop()
    assert sink.finished
