"""The Pareto plot of a tune run: every candidate's throughput against its p99 latency."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt

from ds_triton_perf.report.plots import render
from ds_triton_perf.tuning.measurement import Level, Measurement

if TYPE_CHECKING:
    from ds_triton_perf.tuning.run import TuneRun

Point = tuple[float, float]  # (latency ms, throughput)


def frontier(points: Sequence[Point]) -> list[Point]:
    """The points no other point beats on both axes (lower latency and higher throughput), by latency."""
    best: list[Point] = []
    for latency, throughput in sorted(points, key=lambda p: (p[0], -p[1])):
        if not best or throughput > best[-1][1]:
            best.append((latency, throughput))
    return best


def pareto_plot(run: TuneRun) -> bytes | None:
    generation = run.base.task == "generation"
    measured = [m for o in run.outcomes.values() for m in o.full]
    if not measured:
        return None
    feasible: dict[str, Point] = {}
    others: dict[str, Point] = {}
    for m in measured:
        point = _point(m.best_level, generation) if m.best_level else _closest(m.levels, generation)
        if point is not None:
            (feasible if m.feasible else others)[m.candidate] = point
    figure, axis = plt.subplots(figsize=(8, 4.8))
    if feasible:
        xs, ys = zip(*feasible.values(), strict=True)
        axis.scatter(xs, ys, s=22, color="#1f77b4", alpha=0.75,
                     label="meets the limits")
        line = frontier(list(feasible.values()))
        axis.plot([p[0] for p in line], [p[1] for p in line], color="#1f77b4", drawstyle="steps-post",
                  linewidth=1, label="frontier")
    if others:
        xs, ys = zip(*others.values(), strict=True)
        axis.scatter(xs, ys, s=22, marker="x", color="#999999",
                     label="breaks a limit at every level")
    _mark(axis, run.baseline, feasible, others, "o", "#2ca02c", "before (the model's own settings)")
    _mark(axis, run.recommended, feasible, others, "*", "#d62728", "recommended")
    limit = run.options.objective.ttft_p99_ms if generation else run.options.objective.p99_ms
    if limit:
        axis.axvline(limit, linestyle="--", color="#7f7f7f", alpha=0.7, label=f"limit {limit:g} ms")
    axis.set(title=f"{run.options.model}: every candidate at its best level",
             xlabel="time to first token p99 (ms)" if generation else "p99 latency (ms)",
             ylabel="generated tokens / s" if generation else "items / s", xscale="log")
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize=8)
    return render(figure)


def _mark(axis: plt.Axes, measurement: Measurement | None, feasible: dict[str, Point],
          others: dict[str, Point], marker: str, colour: str, label: str) -> None:
    if measurement is None:
        return
    point = feasible.get(measurement.candidate) or others.get(measurement.candidate)
    if point is not None:
        axis.scatter([point[0]], [point[1]], s=180 if marker == "*" else 90, marker=marker,
                     facecolors="none" if marker == "o" else colour, edgecolors=colour, label=label, zorder=3)


def _point(level: Level, generation: bool) -> Point | None:
    latency = (level.ttft_ms if generation else level.latency_ms).get("p99")
    if latency is None:
        return None
    return latency, level.tokens_per_s if generation else level.throughput


def _closest(levels: Sequence[Level], generation: bool) -> Point | None:
    points = [p for p in (_point(level, generation) for level in levels) if p is not None]
    return min(points) if points else None
