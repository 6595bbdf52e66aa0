"""What one request reports back to the load generator.

The load generator is transport-agnostic: it calls a :data:`RequestFn` and
reads an :class:`Outcome`. Timing is taken by the generator itself; a
streaming request function only adds the arrival time of each token.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field


@dataclass
class Outcome:
    """Result of one request.

    Attributes:
        items: Units of work served (texts embedded, tokens generated); used for items/s.
        error: Error type name when the request failed (``None`` on success).
        token_times: ``time.perf_counter()`` of each streamed token or chunk, in order.
    """

    items: int = 1
    error: str | None = None
    token_times: list[float] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None


RequestFn = Callable[[], Awaitable[Outcome]]
"""A zero-argument coroutine function that sends one request; raising counts as an error."""
