"""Calls in flight per endpoint, so a model that vanished from an endpoint can end them.

Triton 2.51 never sends the final response of a stream whose generation stub died:
the stream would wait for the caller's deadline. ``ds-triton serve``'s supervisor
takes such a model out of readiness within a second, and the active health check
sees it; the client then ends every call on that endpoint and model that has been
silent for a while, and fails it over like any request that did not run (a stream
that already delivered text raises ``StreamInterruptedError``).

Silence matters: a model also turns not-ready while it drains (SIGTERM, an unload),
and its streams then keep producing until they finish; those are left alone.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from ds_triton_client.endpoints import Endpoint


class Abort:
    """Ends one in-flight call from outside the thread or task that reads it.

    The transport binds how (cancel the gRPC stream, shut the HTTP socket); the
    registry fires it. Binding after the fire cancels at once.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cancels: list[Callable[[], object]] = []
        self.reason: str | None = None

    def bind(self, cancel: Callable[[], object]) -> None:
        with self._lock:
            if self.reason is None:
                self._cancels.append(cancel)
                return
        cancel()

    def fire(self, reason: str) -> None:
        with self._lock:
            if self.reason is not None:
                return
            self.reason = reason
            cancels, self._cancels = self._cancels, []
        for cancel in cancels:
            with contextlib.suppress(Exception):  # a call that already ended may refuse
                cancel()


@dataclass(eq=False)
class InFlight:
    """One attempt of a call: its model, its abort, and when it last heard from the server."""

    model: str
    clock: Callable[[], float] = time.monotonic
    abort: Abort = field(default_factory=Abort)
    last_heard: float = 0.0

    def __post_init__(self) -> None:
        self.last_heard = self.clock()

    def heard(self) -> None:
        self.last_heard = self.clock()


class InFlightRegistry:
    """Every attempt in flight, by endpoint (thread-safe; shared by the client and its health check).

    Args:
        silence: Seconds without a response after which a call on a vanished model is ended.
    """

    def __init__(self, silence: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._silence = silence
        self._clock = clock
        self._lock = threading.Lock()
        self._calls: dict[Endpoint, set[InFlight]] = {}

    @contextlib.contextmanager
    def track(self, endpoint: Endpoint, model: str) -> Iterator[InFlight]:
        call = InFlight(model, self._clock)
        with self._lock:
            self._calls.setdefault(endpoint, set()).add(call)
        try:
            yield call
        finally:
            with self._lock:
                self._calls[endpoint].discard(call)

    def model_gone(self, endpoint: Endpoint, model: str, reason: str) -> int:
        """End the silent calls of ``model`` on ``endpoint``; returns how many were ended."""
        now = self._clock()
        with self._lock:
            silent = [
                c
                for c in self._calls.get(endpoint, ())
                if c.model == model and now - c.last_heard >= self._silence
            ]
        for call in silent:
            call.abort.fire(f"model {model!r} is no longer ready on {endpoint.url} ({reason})")
        return len(silent)
