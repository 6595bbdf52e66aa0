"""Least-outstanding-requests endpoint choice with passive ejection and active health.

Pure logic (no I/O) so it is unit-tested with a fake clock. One lock guards all
state: the sync client calls it from worker threads, the async client from one
event loop, and every critical section is a few integer updates.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ds_triton_client.endpoints import Endpoint

Clock = Callable[[], float]


@dataclass
class EndpointState:
    """What the balancer knows about one endpoint."""

    endpoint: Endpoint
    outstanding: int = 0
    consecutive_failures: int = 0
    ejected_until: float = 0.0
    # After a cool-down the endpoint gets live traffic again; one more failure
    # ejects it at once instead of waiting for ``max_fails`` (as nginx does).
    on_probation: bool = False
    healthy: bool = True
    last_error: str | None = None
    requests: int = 0
    failures: int = 0

    def available(self, now: float) -> bool:
        return self.healthy and now >= self.ejected_until

    def as_dict(self, now: float) -> dict[str, object]:
        return {
            "endpoint": self.endpoint.url,
            "available": self.available(now),
            "healthy": self.healthy,
            "ejected_for_s": round(max(0.0, self.ejected_until - now), 3),
            "outstanding": self.outstanding,
            "consecutive_failures": self.consecutive_failures,
            "requests": self.requests,
            "failures": self.failures,
            "last_error": self.last_error,
        }


class Balancer:
    """Chooses an endpoint per attempt and tracks the outcome.

    Args:
        endpoints: The endpoints, in the caller's order (used to break ties fairly).
        max_fails: Consecutive failures that eject an endpoint.
        fail_timeout: Seconds an ejected endpoint stays out.
        clock: Monotonic seconds; injectable for tests.
    """

    def __init__(
        self,
        endpoints: Iterable[Endpoint],
        max_fails: int = 3,
        fail_timeout: float = 10.0,
        clock: Clock = time.monotonic,
    ) -> None:
        self._states = [EndpointState(e) for e in endpoints]
        if not self._states:
            raise ValueError("Balancer needs at least one endpoint")
        self._max_fails = max_fails
        self._fail_timeout = fail_timeout
        self._clock = clock
        self._lock = threading.Lock()
        self._rotation = itertools.count()

    @property
    def endpoints(self) -> list[Endpoint]:
        return [s.endpoint for s in self._states]

    def acquire(self, avoid: Iterable[Endpoint] = ()) -> EndpointState:
        """Pick an endpoint and count one more request in flight on it.

        Prefers available endpoints not in ``avoid`` (those already failed in this
        call), then any available one. When none is available the endpoint whose
        ejection ends first is returned, so the call fails fast with a real error
        instead of waiting blind.
        """
        avoided = set(avoid)
        with self._lock:
            now = self._clock()
            available = [s for s in self._states if s.available(now)]
            candidates = [s for s in available if s.endpoint not in avoided] or available
            if not candidates:
                candidates = [min(self._states, key=lambda s: (not s.healthy, s.ejected_until))]
            # Rotate the start so equal loads spread instead of always hitting the first.
            start = next(self._rotation) % len(candidates)
            rotated = candidates[start:] + candidates[:start]
            chosen = min(rotated, key=lambda s: s.outstanding)
            chosen.outstanding += 1
            chosen.requests += 1
            return chosen

    def release(self, state: EndpointState, failure: str | None = None) -> None:
        """End one request on ``state``; ``failure`` is set when it counts against the endpoint."""
        with self._lock:
            state.outstanding = max(0, state.outstanding - 1)
            if failure is None:
                state.consecutive_failures = 0
                state.on_probation = False
                return
            now = self._clock()
            state.failures += 1
            state.last_error = failure
            if now < state.ejected_until:
                return  # already out; in-flight stragglers do not extend the cool-down
            state.consecutive_failures += 1
            if state.on_probation or state.consecutive_failures >= self._max_fails:
                self._eject(state, now)

    def set_health(self, endpoint: Endpoint, healthy: bool, reason: str | None = None) -> None:
        """Record an active health check: a passing check takes an ejected endpoint back."""
        with self._lock:
            state = self._state(endpoint)
            state.healthy = healthy
            if healthy:
                if state.ejected_until:
                    state.ejected_until = 0.0
                    state.on_probation = True
                state.consecutive_failures = 0
            else:
                state.last_error = reason or state.last_error

    def any_available(self) -> bool:
        with self._lock:
            now = self._clock()
            return any(s.available(now) for s in self._states)

    def snapshot(self) -> list[dict[str, object]]:
        """A copy of every endpoint's state, for ``health()`` and the CLI."""
        with self._lock:
            now = self._clock()
            return [s.as_dict(now) for s in self._states]

    def _eject(self, state: EndpointState, now: float) -> None:
        state.ejected_until = now + self._fail_timeout
        state.consecutive_failures = 0
        state.on_probation = True

    def _state(self, endpoint: Endpoint) -> EndpointState:
        for state in self._states:
            if state.endpoint == endpoint:
                return state
        raise KeyError(f"unknown endpoint {endpoint}")
