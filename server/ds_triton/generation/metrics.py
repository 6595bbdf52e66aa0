"""What the engine reports while it runs; the Triton adapter turns it into custom metrics."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from ds_triton.generation.sequence import FinishReason


class GenerationMetrics(Protocol):
    """Callbacks from the engine thread (keep them cheap)."""

    def forward_pass(self, phase: str, rows: int) -> None:
        """A forward pass ran: ``phase`` is "prefill" or "decode", over ``rows`` sequences."""

    def tokens_generated(self, count: int) -> None: ...

    def first_token(self, seconds: float) -> None:
        """Time from a request's arrival to its first generated token."""

    def occupancy(self, running: int, waiting: int, capacity: int) -> None:
        """Batch occupancy after a step: sequences decoding, queued, and the cap."""

    def sequence_finished(self, reason: FinishReason) -> None: ...

    def flush(self) -> None:
        """Publish anything buffered (the engine calls it before going idle)."""


@dataclass
class CountingMetrics:
    """Plain counters; the default, and what unit tests read."""

    forward_passes: dict[str, int] = field(default_factory=lambda: {"prefill": 0, "decode": 0})
    tokens: int = 0
    first_token_seconds: list[float] = field(default_factory=list)
    max_running: int = 0
    finished: dict[str, int] = field(default_factory=dict)

    def forward_pass(self, phase: str, rows: int) -> None:
        self.forward_passes[phase] = self.forward_passes.get(phase, 0) + 1

    def tokens_generated(self, count: int) -> None:
        self.tokens += count

    def first_token(self, seconds: float) -> None:
        self.first_token_seconds.append(seconds)

    def occupancy(self, running: int, waiting: int, capacity: int) -> None:
        self.max_running = max(self.max_running, running)

    def sequence_finished(self, reason: FinishReason) -> None:
        self.finished[reason.value] = self.finished.get(reason.value, 0) + 1

    def flush(self) -> None:
        pass
