"""Hand-over between the engine thread and the threads that talk to the server process.

Outputs: from the engine thread to the sending thread.

Sending a response costs a round trip to the server process. When a client's
responses are produced faster than they can be sent, the outputs waiting for
the same sequence are merged into one response (text and log-probabilities concatenated, token
counts added), as vLLM's output collector does, so a slow consumer never makes
the engine wait and the number of sends adapts to what the transport can take.
With no backlog, every token still gets its own response.

Cancellation: from a watcher thread (which asks the server) to the engine
thread (which only reads a flag).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from ds_triton.generation.sequence import GenerationOutput

LOG = logging.getLogger(__name__)


def merge_outputs(outputs: Sequence[GenerationOutput]) -> GenerationOutput:
    """One output covering ``outputs`` (in order); the last one decides the finish reason."""
    if not outputs:
        raise ValueError("nothing to merge")
    if len(outputs) == 1:
        return outputs[0]
    logprobs = [o.logprobs for o in outputs if o.logprobs is not None]
    return GenerationOutput(
        text="".join(o.text for o in outputs),
        num_input_tokens=outputs[-1].num_input_tokens,
        num_output_tokens=sum(o.num_output_tokens for o in outputs),
        finish_reason=outputs[-1].finish_reason,
        # Each token's entry stays with the merged response that carries its text.
        logprobs=tuple(e for entries in logprobs for e in entries) if logprobs else None,
        cumulative_logprob=outputs[-1].cumulative_logprob,
        prompt_logprobs=next((o.prompt_logprobs for o in outputs if o.prompt_logprobs), None),
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


T = TypeVar("T")


class SendQueue(Generic[T]):
    """What the sending thread works through: a stream's first response goes ahead of the rest.

    With many streams the sender can fall behind the engine; an ongoing stream
    then only gets its tokens merged into fewer responses, but a new stream's
    first token waiting behind everyone else's would add to its time to first
    token. ``get`` returns None once the queue is closed and empty.
    """

    def __init__(self) -> None:
        self._first: deque[T] = deque()
        self._rest: deque[T] = deque()
        self._ready = threading.Condition()
        self._closed = False

    def put(self, item: T, first: bool = False) -> None:
        with self._ready:
            (self._first if first else self._rest).append(item)
            self._ready.notify()

    def get(self) -> T | None:
        with self._ready:
            while not self._first and not self._rest and not self._closed:
                self._ready.wait()
            if self._first:
                return self._first.popleft()
            if self._rest:
                return self._rest.popleft()
            return None

    def close(self) -> None:
        """No more items; ``get`` drains what is queued, then returns None."""
        with self._ready:
            self._closed = True
            self._ready.notify_all()


class CancelFlag:
    """Whether a request was cancelled, as last seen by ``CancellationWatcher``; reading is free."""

    def __init__(self, poll: Callable[[], bool]) -> None:
        self.poll = poll
        self.cancelled = False
        self.watched = True
        self.lock = threading.Lock()  # held while polling, so ``unwatch`` waits for a poll to end

    def is_set(self) -> bool:
        return self.cancelled


class CancellationWatcher:
    """Polls ``request.is_cancelled()`` for every watched request on its own thread.

    Each call is a round trip to the server process. Made on the engine thread
    for each sequence, they would sit between decode steps; here the engine only
    reads a flag, which is at most one ``interval`` (plus the round trips) old.
    A request stops being watched before its final response is sent, so it is
    never asked about after Triton released it.
    """

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self._clock = clock
        self._flags: list[CancelFlag] = []
        self._lock = threading.Condition()
        self._stopped = False
        self._thread: threading.Thread | None = None

    def watch(self, poll: Callable[[], bool]) -> CancelFlag:
        flag = CancelFlag(poll)
        with self._lock:
            self._flags.append(flag)
            self._lock.notify()
        return flag

    def unwatch(self, flag: CancelFlag) -> None:
        """Stop polling ``flag`` (waits for a poll of it in progress to end)."""
        with flag.lock:
            flag.watched = False
        with self._lock:
            if flag in self._flags:
                self._flags.remove(flag)

    def poll_once(self) -> None:
        """Ask every watched request once; cancelled ones are no longer polled."""
        with self._lock:
            flags = list(self._flags)
        for flag in flags:
            with flag.lock:
                if not flag.watched:
                    continue
                try:
                    flag.cancelled = bool(flag.poll())
                except Exception:  # a broken sender means nobody is listening any more
                    LOG.exception("is_cancelled() failed; treating the request as cancelled")
                    flag.cancelled = True
            if flag.cancelled:
                self.unwatch(flag)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="generation-cancellation", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            self._lock.notify()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _loop(self) -> None:
        while True:
            with self._lock:
                while not self._stopped and not self._flags:
                    self._lock.wait()  # nothing to watch: sleep until a request arrives
                if self._stopped:
                    return
            started = self._clock()
            self.poll_once()
            with self._lock:
                if not self._stopped:
                    self._lock.wait(max(0.0, self.interval - (self._clock() - started)))
