"""An HDR-style latency histogram: fixed relative error, bounded memory, mergeable.

Values are recorded as integer microseconds. Below ``2**sub_bits`` every value
has its own bucket; above, each power-of-two range is split into
``2**(sub_bits-1)`` equal buckets, so a bucket is never wider than
``2**-(sub_bits-1)`` of its value (0.8% with the default 8 bits). The number
of buckets is bounded by ``64 * 2**(sub_bits-1)`` whatever is recorded, so a
run at any rate for any duration uses the same memory.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

PERCENTILES: tuple[float, ...] = (50.0, 90.0, 95.0, 99.0, 99.9)


@dataclass
class Histogram:
    """Counts of values (microseconds) in log-linear buckets."""

    sub_bits: int = 8
    counts: dict[int, int] = field(default_factory=dict)
    total: int = 0
    sum_us: int = 0
    min_us: int | None = None
    max_us: int | None = None

    def record(self, value_us: float, count: int = 1) -> None:
        """Add ``count`` observations of ``value_us`` (negative values count as 0)."""
        value = max(0, round(value_us))
        key = self._key(value)
        self.counts[key] = self.counts.get(key, 0) + count
        self.total += count
        self.sum_us += value * count
        self.min_us = value if self.min_us is None else min(self.min_us, value)
        self.max_us = value if self.max_us is None else max(self.max_us, value)

    def record_seconds(self, seconds: float) -> None:
        self.record(seconds * 1e6)

    def merge(self, other: Histogram) -> None:
        """Add every observation of ``other`` (same ``sub_bits``) to this histogram."""
        if other.sub_bits != self.sub_bits:
            raise ValueError(f"cannot merge histograms of {other.sub_bits} and {self.sub_bits} bits")
        for key, count in other.counts.items():
            self.counts[key] = self.counts.get(key, 0) + count
        self.total += other.total
        self.sum_us += other.sum_us
        for value in (other.min_us, other.max_us):
            if value is not None:
                self.min_us = value if self.min_us is None else min(self.min_us, value)
                self.max_us = value if self.max_us is None else max(self.max_us, value)

    def percentile(self, percent: float) -> float:
        """The value (µs) at ``percent`` (0-100): the bucket midpoint, clamped to min/max."""
        if self.total == 0:
            return math.nan
        if percent >= 100.0:
            return float(self.max_us or 0)
        rank = max(1, math.ceil(percent / 100.0 * self.total))
        seen = 0
        for key in sorted(self.counts):
            seen += self.counts[key]
            if seen >= rank:
                low, high = self._bounds(key)
                middle = (low + high - 1) / 2.0
                return float(min(max(middle, self.min_us or 0), self.max_us or 0))
        return float(self.max_us or 0)

    @property
    def mean_us(self) -> float:
        return self.sum_us / self.total if self.total else math.nan

    def summary_ms(self, percentiles: Iterable[float] = PERCENTILES) -> dict[str, float]:
        """``{"p50": ..., "p99.9": ..., "max": ..., "mean": ...}`` in milliseconds."""
        out = {f"p{_label(p)}": self.percentile(p) / 1000.0 for p in percentiles}
        out["max"] = (self.max_us or 0) / 1000.0 if self.total else math.nan
        out["mean"] = self.mean_us / 1000.0
        return out

    def buckets(self) -> Iterator[tuple[float, float, int]]:
        """``(low_us, high_us, count)`` for each non-empty bucket, in value order."""
        for key in sorted(self.counts):
            low, high = self._bounds(key)
            yield float(low), float(high), self.counts[key]

    def _key(self, value: int) -> int:
        # Sorting keys sorts values: each shift gets its own block of 2**(sub_bits+1) keys.
        shift = max(0, value.bit_length() - self.sub_bits)
        return (shift << (self.sub_bits + 1)) + (value >> shift)

    def _bounds(self, key: int) -> tuple[int, int]:
        shift = key >> (self.sub_bits + 1)
        mantissa = key & ((1 << (self.sub_bits + 1)) - 1)
        return mantissa << shift, (mantissa + 1) << shift


def _label(percent: float) -> str:
    return f"{percent:g}"
