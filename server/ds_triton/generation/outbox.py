"""Hand-over of one sequence's outputs from the engine thread to the sending thread.

Sending a response costs a round trip to the server process. When a client's
responses are produced faster than they can be sent, the outputs waiting for
the same sequence are merged into one response (text concatenated, token
counts added), as vLLM's output collector does, so a slow consumer never makes
the engine wait and the number of sends adapts to what the transport can take.
With no backlog, every token still gets its own response.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ds_triton.generation.sequence import GenerationOutput


def merge_outputs(outputs: Sequence[GenerationOutput]) -> GenerationOutput:
    """One output covering ``outputs`` (in order); the last one decides the finish reason."""
    if not outputs:
        raise ValueError("nothing to merge")
    if len(outputs) == 1:
        return outputs[0]
    return GenerationOutput(
        text="".join(o.text for o in outputs),
        num_input_tokens=outputs[-1].num_input_tokens,
        num_output_tokens=sum(o.num_output_tokens for o in outputs),
        finish_reason=outputs[-1].finish_reason,
    )


@dataclass(frozen=True)
class Drained:
    """What the sending thread takes: one merged output, or the error that ends the request."""

    output: GenerationOutput | None
    error: BaseException | None


class Outbox:
    """Thread-safe buffer of one sequence's pending outputs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: list[GenerationOutput] = []
        self._error: BaseException | None = None
        self._scheduled = False

    def put(self, output: GenerationOutput) -> bool:
        """Buffer ``output``; True when the caller must schedule a ``drain``."""
        with self._lock:
            self._pending.append(output)
            return self._schedule()

    def put_error(self, error: BaseException) -> bool:
        """End the request with ``error`` (pending outputs are dropped)."""
        with self._lock:
            self._error = error
            return self._schedule()

    def drain(self) -> Drained:
        with self._lock:
            pending, self._pending = self._pending, []
            self._scheduled = False
            if self._error is not None:
                return Drained(None, self._error)
        return Drained(merge_outputs(pending) if pending else None, None)

    def _schedule(self) -> bool:
        if self._scheduled:
            return False
        self._scheduled = True
        return True


class PolledFlag:
    """A flag read through a costly call (``request.is_cancelled()``), at most every ``interval``.

    The engine checks cancellation every step; asking the server for every
    sequence at every step would add a round trip per stream per token. Reading
    a cached answer that is at most ``interval`` old bounds that cost to a few
    calls per second per sequence, and a cancellation still frees its slot
    within ``interval`` plus one step. Once true, it stays true.
    """

    def __init__(
        self, poll: Callable[[], bool], interval: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._poll = poll
        self._interval = interval
        self._clock = clock
        self._value = False
        self._checked_at: float | None = None

    def __call__(self) -> bool:
        if self._value:
            return True
        now = self._clock()
        if self._checked_at is None or now - self._checked_at >= self._interval:
            self._checked_at = now
            self._value = bool(self._poll())
        return self._value
