"""Merging outputs for lagging clients and the polled cancellation flag."""

from __future__ import annotations

import pytest

from ds_triton.generation.outbox import Outbox, PolledFlag, merge_outputs
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


def test_polled_flag_asks_at_most_once_per_interval_and_latches() -> None:
    now = [0.0]
    answers = iter([False, False, True])
    calls: list[float] = []

    def poll() -> bool:
        calls.append(now[0])
        return next(answers)

    flag = PolledFlag(poll, interval=0.02, clock=lambda: now[0])
    assert flag() is False
    now[0] = 0.01
    assert flag() is False and len(calls) == 1  # cached
    now[0] = 0.03
    assert flag() is False and len(calls) == 2
    now[0] = 0.06
    assert flag() is True
    now[0] = 10.0
    assert flag() is True and len(calls) == 3  # latched, no more calls
