"""The two search modes over a measurement function: ``brute`` (the grid) and ``quick``.

``quick`` is hill climbing whose every step is a round of successive halving:
all neighbours of the best candidate so far get a cheap *screening*
measurement, the best third of them (those not clearly worse than the
incumbent) are measured in full, and the climb moves to the best of those if
it beats the incumbent by ``min_gain``; it stops when no neighbour does, or
when the time budget is spent. ``brute`` measures every valid grid point in
full. Both start from the model's current settings and pass the best level
found so far to the next measurement, where its load ladder starts.

The measurement function is injected (``Evaluate``): the live one reloads the
model on a server and drives load; tests use a fake with a known optimum.
Every measurement goes through the journal, which makes a search resumable
(see :mod:`ds_triton_perf.tuning.journal`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from ds_triton_perf.tuning.journal import Journal
from ds_triton_perf.tuning.measurement import Fidelity, Measurement
from ds_triton_perf.tuning.objective import Objective
from ds_triton_perf.tuning.space import Candidate, SearchSpace

Mode = Literal["brute", "quick"]
MODES: tuple[Mode, ...] = ("brute", "quick")
# (candidate, fidelity, the best load level so far) -> what was measured
Evaluate = Callable[[Candidate, Fidelity, float | None], Measurement]
Progress = Callable[[Measurement, "SearchState"], None]


class BudgetSpent(Exception):
    """The time budget ran out before the next measurement."""


@dataclass
class SearchState:
    """Where a search stands (passed to the progress callback after every measurement)."""

    mode: Mode
    budget_s: float | None
    spent_s: float = 0.0
    replayed: int = 0
    last_replayed: bool = False
    measured: list[Measurement] = field(default_factory=list)
    best: Measurement | None = None


@dataclass
class SearchOutcome:
    """How a search ended.

    Attributes:
        mode: ``brute`` or ``quick``.
        measurements: Every measurement the search used, in order (replayed ones too).
        best: The best full measurement that met the constraints (``None`` if none did).
        spent_s: Measurement time the search used (the budget's clock).
        stop_reason: Why it stopped.
        replayed: Measurements taken from the journal instead of measured again.
        complete: Whether it stopped by itself (grid done or converged), not by the budget.
    """

    mode: Mode
    measurements: list[Measurement]
    best: Measurement | None
    spent_s: float
    stop_reason: str
    replayed: int
    complete: bool

    @property
    def full(self) -> list[Measurement]:
        return [m for m in self.measurements if m.fidelity == "full"]


@dataclass
class Search:
    """One search of ``space`` for ``objective``.

    Attributes:
        eta: Successive halving keeps ``ceil(n / eta)`` of ``n`` screened neighbours.
        min_gain: A move must beat the incumbent by this share.
        slack: Screened candidates more than this share worse than the incumbent are dropped.
        screen_above: Neighbourhoods up to this size are measured in full without screening.
    """

    space: SearchSpace
    objective: Objective
    evaluate: Evaluate
    fidelity: Fidelity
    journal: Journal = field(default_factory=Journal)
    budget_s: float | None = None
    progress: Progress | None = None
    eta: int = 3
    min_gain: float = 0.02
    slack: float = 0.10
    screen_above: int = 2

    def run(self, mode: Mode, start: Candidate) -> SearchOutcome:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        reason = self.space.why_not(start)
        if reason is not None:
            raise ValueError(f"the starting point {start.key} cannot run: {reason}")
        state = SearchState(mode, self.budget_s)
        try:
            reason = self._brute(state, start) if mode == "brute" else self._quick(state, start)
            complete = True
        except BudgetSpent:
            reason, complete = f"time budget of {duration(self.budget_s or 0)} spent", False
        return SearchOutcome(mode, state.measured, state.best, state.spent_s, reason, state.replayed,
                             complete)

    # -- the modes ------------------------------------------------------------
    def _brute(self, state: SearchState, start: Candidate) -> str:
        grid = self.space.valid_grid()
        for candidate in [start, *[c for c in grid if c != start]]:
            self._measure(state, candidate, self.fidelity)
        return f"every one of the {len(grid)} valid grid points measured"

    def _quick(self, state: SearchState, start: Candidate) -> str:
        screening = self.fidelity.screening()
        incumbent = self._measure(state, start, self.fidelity)
        seen = {start.key}
        while True:
            here = _candidate(self.space, incumbent)
            around = [c for c in self.space.neighbours(here) if c.key not in seen]
            if not around:
                return "converged: every neighbour of the best candidate measured"
            seen.update(c.key for c in around)
            finalists = around
            if len(around) > self.screen_above:
                screened = sorted((self._measure(state, c, screening) for c in around), key=_rank)
                keep = screened[:math.ceil(len(around) / self.eta)]
                finalists = [_candidate(self.space, m) for m in keep if self._promising(m, incumbent)]
            challengers = [self._measure(state, c, self.fidelity) for c in finalists]
            best = min(challengers, key=_rank, default=None)
            if best is None or not self._improves(best, incumbent):
                return (f"converged: no neighbour beats the best by {self.min_gain:.0%} "
                        f"({len(around)} neighbours, {len(finalists)} measured in full)")
            incumbent = best

    def _promising(self, screened: Measurement, incumbent: Measurement) -> bool:
        """Worth a full measurement: not clearly worse than the incumbent (or closer to the limits)."""
        if incumbent.feasible:
            return screened.feasible and self.objective.within(screened.score, incumbent.score, self.slack)
        return screened.feasible or _closer(screened, incumbent, -self.slack)

    def _improves(self, challenger: Measurement, incumbent: Measurement) -> bool:
        if challenger.feasible:
            return not incumbent.feasible or self.objective.better(challenger.score, incumbent.score,
                                                                   self.min_gain)
        return not incumbent.feasible and _closer(challenger, incumbent, self.min_gain)

    # -- one measurement, through the journal and the budget ------------------
    def _measure(self, state: SearchState, candidate: Candidate, fidelity: Fidelity) -> Measurement:
        if self.budget_s is not None and state.spent_s >= self.budget_s:
            raise BudgetSpent
        measurement = self.journal.get(candidate.key, fidelity.name)
        state.last_replayed = measurement is not None
        if measurement is not None:
            state.replayed += 1
        else:
            hint = state.best.best_level.load if state.best and state.best.best_level else None
            measurement = self.evaluate(candidate, fidelity, hint)
            self.journal.add(measurement)
        state.spent_s += measurement.seconds
        state.measured.append(measurement)
        if fidelity.name == "full" and measurement.feasible and (
                state.best is None or _rank(measurement) < _rank(state.best)):
            state.best = measurement
        if self.progress is not None:
            self.progress(measurement, state)
        return measurement


def _rank(measurement: Measurement) -> tuple[int, float, str]:
    """Best first; ties by candidate key, so every run (and every replay) orders alike."""
    return measurement.rank


def _closer(a: Measurement, b: Measurement, margin: float) -> bool:
    """Whether ``a`` came closer to the limits than ``b`` by ``margin`` (neither met them)."""
    if a.fallback is None:
        return False
    if b.fallback is None:
        return True
    return a.fallback > b.fallback + margin * abs(b.fallback)


def _candidate(space: SearchSpace, measurement: Measurement) -> Candidate:
    return Candidate(tuple((name, measurement.settings[name]) for name in space.names))


def duration(seconds: float) -> str:
    """``75`` → ``1m15s``; ``40`` → ``40s``."""
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest:02d}s" if minutes else f"{rest}s"
