"""What the search optimises, as Model Analyzer states it: an objective under latency constraints.

* ``throughput``: the most items per second a candidate serves while its p99
  latency stays within ``p99_ms`` (closed-loop concurrency raised step by step);
* ``latency``: the lowest p99 latency at a fixed open-loop ``rate``;
* ``tokens`` (generation): generated tokens per second while time to first
  token p99 and inter-token latency p99 stay within their limits.

Scores are "higher is better" for every objective (a latency is stored
negated); ``shown`` turns a score back into the figure people read.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from ds_triton_perf.tuning.measurement import Level

ObjectiveKind = Literal["throughput", "latency", "tokens"]


@dataclass(frozen=True)
class Objective:
    """The figure to optimise and the constraints a load level must meet.

    Attributes:
        kind: ``throughput``, ``latency`` or ``tokens``.
        p99_ms: Constraint on end-to-end p99 (``throughput``; optional).
        rate: Open-loop requests per second (``latency``: required).
        ttft_p99_ms: Constraint on time-to-first-token p99 (``tokens``; optional).
        itl_p99_ms: Constraint on inter-token latency p99 (``tokens``; optional).
        max_error_share: Share of failed requests a level may have (refusals count).
    """

    kind: ObjectiveKind
    p99_ms: float | None = None
    rate: float | None = None
    ttft_p99_ms: float | None = None
    itl_p99_ms: float | None = None
    max_error_share: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in ("throughput", "latency", "tokens"):
            raise ValueError(f"objective must be throughput, latency or tokens, got {self.kind!r}")
        if self.kind == "latency" and not (self.rate and self.rate > 0):
            raise ValueError("the latency objective needs a request rate (--rate)")
        for name in ("p99_ms", "ttft_p99_ms", "itl_p99_ms"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be > 0, got {value}")

    @property
    def open_loop(self) -> bool:
        """A fixed open-loop rate (one level) instead of a closed-loop concurrency ladder."""
        return self.kind == "latency"

    @property
    def unit(self) -> str:
        return {"throughput": "items/s", "latency": "ms p99", "tokens": "tokens/s"}[self.kind]

    @property
    def lower_is_better(self) -> bool:
        return self.kind == "latency"

    def describe(self) -> str:
        if self.kind == "latency":
            return f"lowest p99 latency at {self.rate:g} requests/s (open loop)"
        limits = self.limits()
        what = "highest throughput (items/s)" if self.kind == "throughput" else "most generated tokens/s"
        return what + (" with " + " and ".join(limits) if limits else " (no latency constraint)")

    def limits(self) -> list[str]:
        pairs = (("p99", self.p99_ms), ("TTFT p99", self.ttft_p99_ms), ("ITL p99", self.itl_p99_ms))
        return [f"{name} ≤ {value:g} ms" for name, value in pairs if value is not None]

    # -- one level ------------------------------------------------------------
    def violation(self, level: Level) -> str | None:
        """Why ``level`` fails the constraints (``None`` when it meets them)."""
        total = level.requests + level.error_count
        if level.requests == 0:
            return "no request succeeded"
        if level.error_count > self.max_error_share * total:
            kinds = ", ".join(f"{k} {v}" for k, v in sorted(level.errors.items()))
            return f"{level.error_count} of {total} requests failed ({kinds})"
        checks = (("p99", level.latency_ms.get("p99"), self.p99_ms),
                  ("TTFT p99", level.ttft_ms.get("p99"), self.ttft_p99_ms),
                  ("ITL p99", level.itl_ms.get("p99"), self.itl_p99_ms))
        for name, measured, limit in checks:
            if limit is not None and (measured is None or measured > limit):
                shown = "–" if measured is None else f"{measured:.1f}"
                return f"{name} {shown} ms > {limit:g} ms at {level.label()}"
        if self.open_loop and self.rate and level.throughput < 0.9 * self.rate:
            return f"served {level.throughput:.1f}/s of {self.rate:g}/s offered"
        return None

    def excess(self, level: Level) -> float:
        """How far ``level`` is from the limits: the largest measured ÷ limit (≤ 1 within them).

        Gives a search a direction while no candidate meets the constraints yet.
        """
        if level.requests == 0:
            return math.inf
        total = level.requests + level.error_count
        ratios = [1.0 + level.error_count / total] if level.error_count > self.max_error_share * total else []
        for measured, limit in ((level.latency_ms.get("p99"), self.p99_ms),
                                (level.ttft_ms.get("p99"), self.ttft_p99_ms),
                                (level.itl_ms.get("p99"), self.itl_p99_ms)):
            if limit is not None:
                ratios.append(math.inf if measured is None else measured / limit)
        if self.open_loop and self.rate:
            ratios.append(0.9 * self.rate / level.throughput if level.throughput > 0 else math.inf)
        return max(ratios, default=0.0)

    def value(self, level: Level) -> float:
        """The level's score (higher is better)."""
        if self.kind == "latency":
            return -float(level.latency_ms.get("p99") or float("inf"))
        return level.tokens_per_s if self.kind == "tokens" else level.throughput

    def window_figure(self) -> str:
        """Which per-window figure decides when a level is measured well enough."""
        return "p99" if self.kind == "latency" else "tokens" if self.kind == "tokens" else "throughput"

    # -- a candidate ----------------------------------------------------------
    def best(self, levels: Sequence[Level]) -> tuple[float, int] | None:
        """The best score among the levels that meet the constraints, and its index."""
        scored = [(self.value(level), index) for index, level in enumerate(levels)
                  if self.violation(level) is None]
        if not scored:
            return None
        return max(scored, key=lambda pair: (pair[0], -pair[1]))

    def fallback(self, levels: Sequence[Level]) -> float | None:
        """A score for a candidate with no level within the limits: the closer, the higher."""
        excess = [self.excess(level) for level in levels]
        finite = [e for e in excess if math.isfinite(e)]
        return -min(finite) if finite else None

    def shown(self, score: float | None) -> float | None:
        """The score as people read it (a latency positive again)."""
        return None if score is None else -score if self.lower_is_better else score

    def better(self, a: float | None, b: float | None, margin: float = 0.0) -> bool:
        """Whether score ``a`` beats ``b`` by more than ``margin`` (a share of ``b``'s figure)."""
        if a is None:
            return False
        if b is None:
            return True
        return a > b + margin * abs(b)

    def within(self, a: float | None, b: float | None, tolerance: float) -> bool:
        """Whether score ``a`` is no more than ``tolerance`` (a share) worse than ``b``."""
        if b is None:
            return True
        if a is None:
            return False
        return a >= b - tolerance * abs(b)
