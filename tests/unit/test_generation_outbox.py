"""Merging outputs for lagging clients, and cancellation seen through the watcher thread."""

from __future__ import annotations

import threading
import time

import pytest

from ds_triton.generation.outbox import CancellationWatcher, Outbox, SendQueue, merge_outputs
from ds_triton.generation.sequence import FinishReason, GenerationOutput


def out(text: str, reason: FinishReason | None = None) -> GenerationOutput:
    return GenerationOutput(text, num_input_tokens=3, num_output_tokens=1, finish_reason=reason)


def test_merge_concatenates_text_and_adds_token_counts() -> None:
    merged = merge_outputs([out(" a"), out("b"), out(" c", FinishReason.LENGTH)])
    assert merged == GenerationOutput(" ab c", 3, 3, FinishReason.LENGTH)
    assert merge_outputs([out("x")]) == out("x")
    with pytest.raises(ValueError):
        merge_outputs([])


def test_outbox_schedules_once_per_drain() -> None:
    box = Outbox()
    assert box.put(out("a")) is True
    assert box.put(out("b")) is False  # already scheduled: the sender will take both
    drained = box.drain()
    assert drained.output == GenerationOutput("ab", 3, 2, None) and drained.error is None
    assert box.drain().output is None
    assert box.put(out("c", FinishReason.STOP)) is True
    assert box.drain().output == out("c", FinishReason.STOP)


def test_an_error_replaces_pending_outputs() -> None:
    box = Outbox()
    box.put(out("a"))
    assert box.put_error(RuntimeError("boom")) is False
    drained = box.drain()
    assert drained.output is None and isinstance(drained.error, RuntimeError)


class FakeRequest:
    def __init__(self) -> None:
        self.cancelled = False
        self.calls = 0

    def is_cancelled(self) -> bool:
        self.calls += 1
        return self.cancelled


def test_a_cancellation_is_seen_at_the_next_poll_and_then_no_longer_asked() -> None:
    watcher = CancellationWatcher(interval=0.02)
    live, cancelled = FakeRequest(), FakeRequest()
    live_flag, cancelled_flag = watcher.watch(live.is_cancelled), watcher.watch(cancelled.is_cancelled)
    watcher.poll_once()
    assert not live_flag.is_set() and not cancelled_flag.is_set()
    cancelled.cancelled = True
    watcher.poll_once()  # the very next poll sees it
    assert cancelled_flag.is_set() and not live_flag.is_set()
    watcher.poll_once()
    assert cancelled.calls == 2 and live.calls == 3  # a cancelled request is not asked again


def test_an_unwatched_request_is_never_asked_again() -> None:
    watcher = CancellationWatcher(interval=0.02)
    request = FakeRequest()
    flag = watcher.watch(request.is_cancelled)
    watcher.unwatch(flag)
    watcher.poll_once()
    assert request.calls == 0 and not flag.is_set()


def test_a_failing_poll_counts_as_cancelled() -> None:
    def broken() -> bool:
        raise RuntimeError("stub gone")

    watcher = CancellationWatcher(interval=0.02)
    flag = watcher.watch(broken)
    watcher.poll_once()
    assert flag.is_set()


def test_the_watcher_thread_polls_every_interval_and_stops() -> None:
    watcher = CancellationWatcher(interval=0.01)
    request = FakeRequest()
    flag = watcher.watch(request.is_cancelled)
    watcher.start()
    try:
        request.cancelled = True
        deadline = time.monotonic() + 10  # generous: a loaded machine, not a speed test
        while not flag.is_set() and time.monotonic() < deadline:
            time.sleep(0.005)
        assert flag.is_set()
    finally:
        watcher.stop()
    assert not any(t.name == "generation-cancellation" for t in threading.enumerate())


def test_first_responses_are_sent_ahead_and_close_drains_the_rest() -> None:
    queue: SendQueue[str] = SendQueue()
    queue.put("stream a, token 5")
    queue.put("stream b, token 9")
    queue.put("stream c, first token", first=True)
    queue.close()
    assert [queue.get() for _ in range(4)] == [
        "stream c, first token", "stream a, token 5", "stream b, token 9", None,
    ]
