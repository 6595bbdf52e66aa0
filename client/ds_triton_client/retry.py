"""Deadlines, retry decisions and exponential backoff with jitter (pure logic)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ds_triton_client.errors import ClientError


class Deadline:
    """A point in monotonic time that a whole call, retries included, must meet."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.seconds = seconds
        self._at = clock() + seconds

    def remaining(self) -> float:
        return max(0.0, self._at - self._clock())

    def expired(self) -> bool:
        return self.remaining() <= 0.0


@dataclass
class RetryPolicy:
    """When to try again, and how long to wait first.

    Only errors whose class says the request certainly did not run elsewhere in a
    way that matters (``retryable``: connection failures, ``UNAVAILABLE``, model not
    ready on that endpoint) are retried (a stream that delivered output never is:
    see ``Failover.failed``).

    Attributes:
        max_attempts: Attempts per call (1 = no retry).
        base: First delay in seconds; doubles with every attempt.
        cap: Upper bound of one delay in seconds.
    """

    max_attempts: int = 4
    base: float = 0.05
    cap: float = 1.0
    rng: random.Random = field(default_factory=random.Random)

    def should_retry(self, error: ClientError, attempt: int) -> bool:
        """Whether attempt number ``attempt`` (1-based) that raised ``error`` may be repeated."""
        return error.retryable and attempt < self.max_attempts

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1-based).

        "Equal jitter": half of the exponential step is fixed, half random, so
        clients that failed together do not retry together, yet never retry at once.
        """
        step = min(self.cap, self.base * (2 ** (attempt - 1)))
        return step / 2 + self.rng.uniform(0, step / 2)
