"""Everything one load-generator run observes, in bounded memory.

Latencies go into :class:`~ds_triton_perf.histogram.Histogram` objects, the
per-second timeline has one slot per second of the run, and the raw samples
kept for CSV are a fixed-size reservoir, so memory does not grow with the
request rate. Runs that need to see latency change over time (the overload
scenario) also keep one :class:`SecondBin` per second of the window.
"""

from __future__ import annotations

import itertools
import random
from collections import Counter
from dataclasses import dataclass, field

from ds_triton_perf.histogram import Histogram
from ds_triton_perf.outcome import Outcome


@dataclass(frozen=True)
class Sample:
    """One recorded request, seconds relative to the start of the measurement window."""

    intended_s: float
    sent_s: float
    latency_ms: float
    items: int
    error: str


@dataclass
class SecondBin:
    """One second of a run: requests by intended send time, completions by end time.

    Attributes:
        ok: Requests that succeeded.
        errors: Failed requests by error type.
        items_done: Items of successful requests that *ended* in this second (goodput).
        latency: Successful requests, from intended send to the end.
        ttft: Successful streams, from intended send to the first token.
        error_ms: Per error type, from the actual send to the error (how fast a refusal is).
    """

    ok: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    items_done: int = 0
    latency: Histogram = field(default_factory=Histogram)
    ttft: Histogram = field(default_factory=Histogram)
    error_ms: dict[str, Histogram] = field(default_factory=dict)


@dataclass
class Recorder:
    """Accumulates outcomes whose intended send time falls in the measurement window."""

    window_start: float
    window_end: float
    reservoir_size: int = 5000
    seed: int = 0
    latency: Histogram = field(default_factory=Histogram)
    ttft: Histogram = field(default_factory=Histogram)
    itl: Histogram = field(default_factory=Histogram)
    errors: Counter[str] = field(default_factory=Counter)
    completed: int = 0
    completed_in_window: int = 0
    items_in_window: int = 0
    tokens: int = 0
    samples: list[Sample] = field(default_factory=list)
    timeline: list[int] = field(default_factory=list)
    keep_bins: bool = False
    bins: list[SecondBin] = field(default_factory=list)
    _seen: int = 0
    _rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        self._rng.seed(self.seed)
        self.timeline = [0] * max(1, int(self.window_end - self.window_start) + 1)
        if self.keep_bins:
            self.bins = [SecondBin() for _ in self.timeline]

    def in_window(self, t: float) -> bool:
        return self.window_start <= t < self.window_end

    def record(self, intended: float, sent: float, end: float, outcome: Outcome) -> None:
        """Record a finished request; latency counts from the *intended* send time."""
        ended_in_window = self.in_window(end)
        if outcome.ok and ended_in_window:
            # Throughput counts completions inside the window, whenever they were sent.
            self.completed_in_window += 1
            self.items_in_window += outcome.items
            self.timeline[int(end - self.window_start)] += 1
            if self.bins:
                self.bins[int(end - self.window_start)].items_done += outcome.items
        if not self.in_window(intended):
            return
        if self.bins:
            self._bin(intended, sent, end, outcome)
        if not outcome.ok:
            self.errors[outcome.error or "Error"] += 1
        else:
            self.completed += 1
            self.latency.record_seconds(end - intended)
            self._record_stream(intended, outcome)
        self._keep_sample(intended, sent, end, outcome)

    def _bin(self, intended: float, sent: float, end: float, outcome: Outcome) -> None:
        slot = self.bins[int(intended - self.window_start)]
        if outcome.ok:
            slot.ok += 1
            slot.latency.record_seconds(end - intended)
            if outcome.token_times:
                slot.ttft.record_seconds(outcome.token_times[0] - intended)
        else:
            error = outcome.error or "Error"
            slot.errors[error] += 1
            slot.error_ms.setdefault(error, Histogram()).record_seconds(end - sent)

    def record_unfinished(self, count: int) -> None:
        if count:
            self.errors["Unfinished"] += count

    def _record_stream(self, intended: float, outcome: Outcome) -> None:
        times = outcome.token_times
        if not times:
            return
        self.tokens += len(times)
        self.ttft.record_seconds(times[0] - intended)
        for before, after in itertools.pairwise(times):
            self.itl.record_seconds(after - before)

    def _keep_sample(self, intended: float, sent: float, end: float, outcome: Outcome) -> None:
        # Reservoir sampling (Algorithm R): every request has the same chance to be kept.
        self._seen += 1
        sample = Sample(
            intended_s=intended - self.window_start,
            sent_s=sent - self.window_start,
            latency_ms=(end - intended) * 1000.0,
            items=outcome.items,
            error=outcome.error or "",
        )
        if len(self.samples) < self.reservoir_size:
            self.samples.append(sample)
            return
        slot = self._rng.randrange(self._seen)
        if slot < self.reservoir_size:
            self.samples[slot] = sample
