"""What measuring one candidate produced: load levels made of windows, and their noise.

A level is one load (closed-loop concurrency or open-loop rate) measured in
consecutive windows until the 95% confidence interval of its main figure is
tight enough or a cap is reached; the windows' spread is the noise the report
shows. A measurement is a candidate's levels plus what it cost.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

# Two-sided 95% Student t quantiles by degrees of freedom (1..10); 1.96 beyond 30.
_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228)


def t95(dof: int) -> float:
    if dof < 1:
        return math.inf
    if dof <= len(_T95):
        return _T95[dof - 1]
    return 2.086 if dof <= 20 else 2.042 if dof <= 30 else 1.96


def relative_ci(values: Sequence[float]) -> float:
    """Half-width of the 95% confidence interval of the mean, as a share of the mean (inf if unknown)."""
    if len(values) < 2 or not all(math.isfinite(v) for v in values):
        return math.inf  # a window with no figure (nothing completed) leaves the level unknown
    mean = statistics.fmean(values)
    if mean == 0:
        return math.inf
    return t95(len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values)) / abs(mean)


@dataclass(frozen=True)
class Fidelity:
    """How hard each load level is measured.

    Attributes:
        name: ``full`` or ``screen`` (a cheap first look, for successive halving).
        window_s: Length of one measurement window.
        min_windows: Windows always taken.
        max_windows: The cap: stop here even if the interval is still wide.
        ci_target: Stop once the 95% interval's half-width is within this share of the mean.
    """

    name: str
    window_s: float
    min_windows: int
    max_windows: int
    ci_target: float

    def __post_init__(self) -> None:
        if self.window_s <= 0 or not 1 <= self.min_windows <= self.max_windows or self.ci_target <= 0:
            raise ValueError(f"invalid fidelity {self}")

    def screening(self) -> Fidelity:
        """Half-length windows, two of them: ranks candidates, not a final figure."""
        return Fidelity("screen", self.window_s / 2, min(2, self.max_windows), min(2, self.max_windows),
                        self.ci_target)

    def done(self, values: Sequence[float]) -> bool:
        """Whether windows with these figures are enough."""
        if len(values) < self.min_windows:
            return False
        return len(values) >= self.max_windows or relative_ci(values) <= self.ci_target


@dataclass
class Level:
    """One load level of a candidate, all its windows merged.

    Attributes:
        mode: ``closed`` (``load`` = concurrency) or ``open`` (``load`` = requests/s).
        windows: The level's main figure per window (throughput, or p99 for a latency objective).
        throughput: Items (texts, or requests for generation) per second, mean over windows.
        tokens_per_s: Generated tokens per second (generation).
        latency_ms: End-to-end latency percentiles (``p50``, ``p90``, ``p99``) of all windows.
        ttft_ms / itl_ms: Time to first token and inter-token latency percentiles (generation).
        requests / errors: Counted in the windows; errors by type.
        server: Triton's side of the level: ``queue_ms``, ``compute_ms`` per request and the
            achieved ``batch`` size (generation: mean sequences per decode step).
    """

    mode: Literal["closed", "open"]
    load: float
    windows: list[float]
    throughput: float
    tokens_per_s: float = 0.0
    latency_ms: dict[str, float] = field(default_factory=dict)
    ttft_ms: dict[str, float] = field(default_factory=dict)
    itl_ms: dict[str, float] = field(default_factory=dict)
    requests: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    server: dict[str, float] = field(default_factory=dict)

    @property
    def noise(self) -> float:
        """Relative 95% interval of the windows' figure (inf with one window)."""
        return relative_ci(self.windows)

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def label(self) -> str:
        return f"c={self.load:g}" if self.mode == "closed" else f"{self.load:g}/s"

    def to_dict(self) -> dict[str, Any]:
        return _finite(asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Level:
        return cls(**data)


@dataclass
class Measurement:
    """One candidate measured at one fidelity.

    Attributes:
        candidate: The candidate's key (``Candidate.key``).
        settings: Its settings (for the report and patch).
        fidelity: ``full`` or ``screen``.
        levels: The load levels measured, in the order they ran.
        score: The objective's figure (higher is better: latency objectives store it negated);
            ``None`` when no level met the constraints.
        fallback: When none did, how close the closest came (``Objective.fallback``).
        best: Index in ``levels`` of the level the score comes from.
        seconds: What the measurement cost, reload included (the search budget counts this).
        reload_s: Seconds the (re)load of the model took.
        memory_mb: Resident memory of the model's instances after loading (all of them).
        failed: Why the candidate could not be measured (load failure), else ``None``.
        violation: Why the last level tried failed the constraints (for the report).
    """

    candidate: str
    settings: dict[str, Any]
    fidelity: str
    levels: list[Level] = field(default_factory=list)
    score: float | None = None
    fallback: float | None = None
    best: int | None = None
    seconds: float = 0.0
    reload_s: float = 0.0
    memory_mb: float = 0.0
    failed: str | None = None
    violation: str | None = None

    @property
    def feasible(self) -> bool:
        return self.score is not None

    @property
    def rank(self) -> tuple[int, float, str]:
        """Sort key, best first: those within the limits by score, then the rest by how close they came."""
        if self.score is not None:
            return (0, -self.score, self.candidate)
        return (1, -(self.fallback if self.fallback is not None else -math.inf), self.candidate)

    @property
    def best_level(self) -> Level | None:
        return self.levels[self.best] if self.best is not None else None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["levels"] = [level.to_dict() for level in self.levels]
        return _finite(data)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Measurement:
        data = dict(data)
        data["levels"] = [Level.from_dict(level) for level in data.get("levels", [])]
        return cls(**data)


def _finite(value: Any) -> Any:
    """JSON has no inf/nan: store them as None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
