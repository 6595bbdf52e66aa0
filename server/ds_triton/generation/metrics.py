"""What the engine reports while it runs, aggregated in-process.

The engine thread only adds to counters here; a publisher on another thread
takes the accumulated deltas at a fixed interval and turns them into Triton
custom metrics (``ds_triton.backend.generation_metrics``). So reporting never
costs the decode loop a round trip to the server process.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol

from ds_triton.generation.sequence import FinishReason

PHASES: tuple[str, ...] = ("prefill", "decode")


class GenerationMetrics(Protocol):
    """Callbacks from the engine thread: each must be cheap and must not block."""

    def forward_pass(self, phase: str, rows: int) -> None:
        """A forward pass ran: ``phase`` is "prefill" or "decode", over ``rows`` sequences."""

    def tokens_generated(self, count: int) -> None: ...

    def first_token(self, seconds: float) -> None:
        """Time from a request's arrival to its first generated token."""

    def occupancy(self, running: int, waiting: int, capacity: int) -> None:
        """After a step: sequences holding cache rows, requests queued, and the rows."""

    def kv_tokens(self, reserved: int, capacity: int) -> None:
        """After a step: KV tokens reserved by admitted sequences, and the token budget."""

    def sequence_finished(self, reason: FinishReason) -> None: ...


@dataclass
class CountingMetrics:
    """Plain counters; what unit tests read."""

    forward_passes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PHASES, 0))
    tokens: int = 0
    first_token_seconds: list[float] = field(default_factory=list)
    max_running: int = 0
    max_reserved_tokens: int = 0
    finished: dict[str, int] = field(default_factory=dict)

    def forward_pass(self, phase: str, rows: int) -> None:
        self.forward_passes[phase] = self.forward_passes.get(phase, 0) + 1

    def tokens_generated(self, count: int) -> None:
        self.tokens += count

    def first_token(self, seconds: float) -> None:
        self.first_token_seconds.append(seconds)

    def occupancy(self, running: int, waiting: int, capacity: int) -> None:
        self.max_running = max(self.max_running, running)

    def kv_tokens(self, reserved: int, capacity: int) -> None:
        self.max_reserved_tokens = max(self.max_reserved_tokens, reserved)

    def sequence_finished(self, reason: FinishReason) -> None:
        self.finished[reason.value] = self.finished.get(reason.value, 0) + 1


@dataclass
class MetricsDelta:
    """What happened since the previous ``MetricsAggregator.take``, and the latest gauges."""

    tokens: int = 0
    forward_passes: Counter[str] = field(default_factory=Counter)
    decode_rows: Counter[int] = field(default_factory=Counter)  # rows per decode pass -> passes
    first_token_seconds: list[float] = field(default_factory=list)
    finished: Counter[FinishReason] = field(default_factory=Counter)
    gauges: dict[str, int] = field(default_factory=dict)


class MetricsAggregator:
    """Implements ``GenerationMetrics`` by accumulating; ``take`` hands the deltas over."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._delta = MetricsDelta()

    def forward_pass(self, phase: str, rows: int) -> None:
        with self._lock:
            self._delta.forward_passes[phase] += 1
            if phase == "decode":
                self._delta.decode_rows[rows] += 1

    def tokens_generated(self, count: int) -> None:
        with self._lock:
            self._delta.tokens += count

    def first_token(self, seconds: float) -> None:
        with self._lock:
            self._delta.first_token_seconds.append(seconds)

    def occupancy(self, running: int, waiting: int, capacity: int) -> None:
        with self._lock:
            self._delta.gauges.update(running=running, waiting=waiting, capacity=capacity)

    def kv_tokens(self, reserved: int, capacity: int) -> None:
        with self._lock:
            self._delta.gauges.update(kv_reserved=reserved, kv_capacity=capacity)

    def sequence_finished(self, reason: FinishReason) -> None:
        with self._lock:
            self._delta.finished[reason] += 1

    def take(self) -> MetricsDelta:
        """The deltas since the last call (gauges: their latest values); starts anew."""
        with self._lock:
            delta, self._delta = self._delta, MetricsDelta()
        return delta
