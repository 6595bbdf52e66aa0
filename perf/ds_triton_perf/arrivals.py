"""Intended send times for open-loop load: constant or Poisson arrivals, fixed or scheduled rate."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from typing import Literal

Distribution = Literal["constant", "poisson"]


def arrival_offsets(rate: float, distribution: Distribution, seed: int = 0) -> Iterator[float]:
    """Seconds from the start at which each request is *intended* to be sent (endless).

    Args:
        rate: Mean requests per second (> 0).
        distribution: ``constant`` (evenly spaced) or ``poisson`` (exponential gaps).
        seed: Seed for the Poisson gaps, so runs are repeatable.
    """
    if rate <= 0:
        raise ValueError(f"rate must be > 0, got {rate}")
    if distribution not in ("constant", "poisson"):
        raise ValueError(f"distribution must be 'constant' or 'poisson', got {distribution!r}")
    rng = random.Random(seed)
    offset = 0.0
    index = 0
    while True:
        if distribution == "constant":
            # Multiply rather than accumulate so float error never drifts the schedule.
            yield index / rate
            index += 1
        else:
            yield offset
            offset += rng.expovariate(rate)


def scheduled_offsets(phases: Sequence[tuple[float, float]], distribution: Distribution,
                      seed: int = 0) -> Iterator[float]:
    """Intended send times for a piecewise-constant rate: ``(duration_s, rate)`` per phase.

    Each phase starts on its own boundary (Poisson gaps are memoryless, so
    nothing is lost at the seam); the schedule ends with the last phase.
    """
    if not phases or any(duration <= 0 or rate <= 0 for duration, rate in phases):
        raise ValueError(f"phases need positive durations and rates, got {list(phases)}")
    begin = 0.0
    for index, (duration, rate) in enumerate(phases):
        for offset in arrival_offsets(rate, distribution, seed + index):
            if offset >= duration:
                break
            yield begin + offset
        begin += duration
