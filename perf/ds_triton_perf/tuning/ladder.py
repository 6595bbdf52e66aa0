"""Which load levels to measure for one candidate (Model Analyzer's concurrency sweep, bounded).

Closed loop: concurrency goes up a ladder (1, 2, 4, ...) while the levels meet
the constraints and throughput still grows by ``min_gain``; the candidate's
figure is its best level that meets them. A search passes the best level of
the best candidate so far as ``start``: the climb begins there (one step
below, so the step up is measured too) instead of at 1, and steps down when
that level already breaks a constraint. Open loop (a latency objective) is
one level at the objective's rate.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ds_triton_perf.tuning.measurement import Level
from ds_triton_perf.tuning.objective import Objective

MeasureLevel = Callable[[float], Level]


def concurrency_ladder(highest: int) -> list[float]:
    """1, 2, 4, ... up to ``highest`` (which is included even when not a power of two)."""
    if highest < 1:
        raise ValueError(f"the highest concurrency must be >= 1, got {highest}")
    loads: list[float] = []
    value = 1
    while value < highest:
        loads.append(float(value))
        value *= 2
    loads.append(float(highest))
    return loads


def start_index(loads: Sequence[float], hint: float | None) -> int:
    """Where a climb starts: one step below the hinted level (the bottom without a hint)."""
    if hint is None:
        return 0
    at_or_below = [i for i, load in enumerate(loads) if load <= hint]
    return max(0, (at_or_below[-1] if at_or_below else 0) - 1)


def climb(measure: MeasureLevel, objective: Objective, loads: Sequence[float], hint: float | None = None,
          min_gain: float = 0.05) -> list[Level]:
    """Measure levels of ``loads`` as described above; returns them in the order measured."""
    if objective.open_loop:
        assert objective.rate is not None
        return [measure(objective.rate)]
    index = start_index(loads, hint)
    measured = [measure(loads[index])]
    if objective.violation(measured[0]) is not None:
        while index > 0:  # too much load already: step down to the first level that passes
            index -= 1
            measured.append(measure(loads[index]))
            if objective.violation(measured[-1]) is None:
                break
        return measured
    best = objective.value(measured[0])
    while index + 1 < len(loads):
        index += 1
        level = measure(loads[index])
        measured.append(level)
        if objective.violation(level) is not None:
            break
        value = objective.value(level)
        gained = value > best * (1 + min_gain)
        best = max(best, value)
        if not gained:
            break  # saturated: more concurrency only adds queueing
    return measured
