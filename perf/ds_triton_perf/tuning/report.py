"""A tune run's report: ``report.html`` (Pareto plot, top 5, validation), ``summary.md``, raw data.

The HTML page is built from the benchmark report's document model and writer
(``ds_triton_perf.report``), so both reports look and read alike.
"""

from __future__ import annotations

import csv
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

from ds_triton_perf.report.document import Figure, Group, Report, Section, Table
from ds_triton_perf.report.html import render_html
from ds_triton_perf.report.summary import table
from ds_triton_perf.tuning.compare import ModeComparison, compare_modes
from ds_triton_perf.tuning.measurement import Level, Measurement
from ds_triton_perf.tuning.patch import SpecPatch
from ds_triton_perf.tuning.plots import pareto_plot
from ds_triton_perf.tuning.run import TuneRun, top

PARETO = "pareto"


def write_report(run: TuneRun, patch: SpecPatch | None) -> Report:
    """Write every output file of the run folder; returns the report (its summary is printed)."""
    report = build_report(run, patch)
    out = run.out_dir
    (out / "report.html").write_text(render_html(report))
    (out / "summary.md").write_text(summary_markdown(report, patch))
    (out / "results.json").write_text(json.dumps(_results(run, patch), indent=1) + "\n")
    _write_candidates_csv(run, out / "candidates.csv")
    if patch is not None and not patch.empty:
        (out / "model.json.patch").write_text(patch.diff)
    return report


def build_report(run: TuneRun, patch: SpecPatch | None) -> Report:
    options, machine = run.options, run.machine
    comparison = compare_modes(run) if len(run.outcomes) == 2 else None
    header = [
        f"Machine: {machine.get('cpu')}, {machine.get('cores')} cores, "
        f"{machine.get('memory_total_bytes', 0) / 2**30:.0f} GiB, GPUs: {machine.get('gpus') or 'none'}; "
        f"load average at start {machine.get('load_average_start')}. Date: {machine.get('date')}.",
        f"Command: {options.command}.",
        f"Objective: {options.objective.describe()}. Requests: {run.workload.description}; "
        f"load from the {'project load generator' if options.driver == 'loadgen' else 'perf_analyzer'}.",
        f"Each level: windows of {options.fidelity.window_s:g} s, at least {options.fidelity.min_windows}, "
        f"until the 95% interval of its figure is within ±{options.fidelity.ci_target:.0%} or "
        f"{options.fidelity.max_windows} windows; the ± columns are that interval (the noise).",
        " ".join(f"{mode}: {o.stop_reason} ({len(o.measurements)} measurements, {o.spent_s / 60:.1f} min)."
                 for mode, o in run.outcomes.items())
        + f" Wall time of this invocation {run.wall_s / 60:.1f} min."
        + (" Interrupted: resume with `ds-triton tune --resume " + str(run.out_dir) + "`."
           if run.interrupted else ""),
    ]
    sections = [_recommendation(run, patch), _top(run), _validation(run)]
    if comparison is not None:
        sections.append(_comparison_section(comparison))
    sections += [_every_candidate(run), _space(run)]
    return Report(
        title=f"ds-triton tune {options.model}",
        header=header,
        verdicts=(comparison.verdicts() if comparison else []) + _bar_verdicts(run),
        groups=[Group("tune", f"{options.model}: {run.recommendation}", [s for s in sections if s])],
        how_to_read=[
            "Each candidate is a model.json setting measured on a live server (the model reloaded on a "
            "scratch copy of the repository). Closed-loop concurrency goes up a ladder while the latency "
            "limits hold and throughput still grows; a candidate's figure is its best level that meets them.",
            "The Pareto plot puts every candidate at that level; the line joins the candidates no other "
            "beats on both throughput and latency (the frontier).",
        ],
        notes=run.notes,
    )


def summary_markdown(report: Report, patch: SpecPatch | None) -> str:
    parts = [f"# {report.title}", "\n".join(f"- {line}" for line in report.header)]
    if report.verdicts:
        parts += ["## Verdicts (benchmark outputs, not tests)", table(
            ["target", "bar", "measured", "verdict", "detail"],
            [[v["target"], v["bar"], v["measured"], v["verdict"], v["detail"]] for v in report.verdicts])]
    for group in report.groups:
        parts.append(f"## {group.title}")
        for section in group.sections:
            parts.append(f"### {section.title}")
            if section.text:
                parts.append(section.text)
            for item in section.tables:
                parts.append((f"{item.title}:\n\n" if item.title else "") + table(item.headers, item.rows))
    if patch is not None and not patch.empty:
        parts += ["## model.json patch", f"```diff\n{patch.diff}```"]
    if report.notes:
        parts += ["## Notes", "\n".join(f"- {note}" for note in report.notes)]
    return "\n\n".join(parts) + "\n"


# -- sections --------------------------------------------------------------------
def _recommendation(run: TuneRun, patch: SpecPatch | None) -> Section:
    baseline, chosen = run.baseline, run.recommended
    rows = []
    pairs = (("before (the model's own settings)", baseline), ("after (recommended)", chosen))
    for name, measurement in pairs:
        if measurement is not None:
            rows.append([name, measurement.candidate, *_figures(run, measurement)])
    changes = ", ".join(f"{k}: {_plain(a)} → {_plain(b)}" for k, (a, b) in patch.changes.items()) \
        if patch is not None and not patch.empty else "none"
    text = f"{run.recommendation}. Changes to model.json: {changes}."
    return Section("recommendation", "Before and after", text,
                   [Table(["", "settings", *_figure_headers(run)], rows)] if rows else [])


def _top(run: TuneRun) -> Section:
    primary = run.primary
    best = top(primary.full, 5) if primary else []
    rows = [[rank, m.candidate, *_figures(run, m)] for rank, m in enumerate(best, 1)]
    return Section(
        "top", "Top 5", "The five best candidates measured in full, by the objective.",
        [Table(["#", "settings", *_figure_headers(run)], rows)],
        [Figure(PARETO, "Throughput vs p99 latency of every candidate",
                "Each point is a candidate at its best level that meets the limits (crosses: none did, shown "
                "at their lowest-latency level); the line is the frontier, the star the recommendation.",
                lambda: pareto_plot(run))])


def _validation(run: TuneRun) -> Section | None:
    if not run.validations:
        return None
    generation = run.base.task == "generation"
    rows = [[v.candidate, v.single_ms, v.loaded_ms, v.ratio, v.bar, v.ceiling_ratio,
             v.failed or ("meets" if v.meets else "misses")] for v in run.validations.values()]
    single = "single-stream TTFT p50 ms" if generation else "single-request p50 ms"
    loaded = "TTFT p99 at its level ms" if generation else "p99 at 50% of its max ms"
    ceiling = run.machine.get("ceiling_items_per_s")
    text = ("Each finalist deployed again: " + ("TTFT p99 at its best level against one stream's TTFT p50 "
            "(≤ 3×)." if generation else "p99 in open loop at half its best throughput against one "
            "request at a time (≤ 2×)" + (f"; best throughput ÷ the in-process ceiling "
                                          f"({ceiling:.1f} items/s) ≥ 0.95." if ceiling else ".")))
    return Section("validation", "Latency bars of the finalists", text,
                   [Table(["settings", single, loaded, "ratio", "bar", "÷ ceiling", "verdict"], rows)])


def _comparison_section(comparison: ModeComparison) -> Section:
    return Section("modes", "quick vs brute", comparison.text(), [comparison.table()])


def _every_candidate(run: TuneRun) -> Section:
    rows = []
    for mode, outcome in run.outcomes.items():
        ordered = sorted(outcome.measurements, key=lambda m: (m.fidelity != "full", -(m.score or -1e18)))
        for m in ordered:
            rows.append([mode, m.fidelity, m.candidate, *_figures(run, m), round(m.seconds, 1),
                         m.failed or m.violation or ""])
    return Section("candidates", "Every measurement", "Screen rows are the short first look of quick mode.",
                   [Table(["mode", "fidelity", "settings", *_figure_headers(run), "cost s", "last limit hit"],
                          rows)])


def _space(run: TuneRun) -> Section | None:
    space = run.space
    if space is None:
        return None
    rejected = Counter(_reason_kind(reason) for _, reason in space.rejected())
    rows = [[d.name, ", ".join(_plain(v) for v in d.values)] for d in space.dimensions]
    can_run = space.size - sum(rejected.values())
    ruled_out = "; ".join(f"{count} ruled out: {reason}" for reason, count in rejected.most_common())
    text = f"{space.size} grid points, {can_run} can run on this machine."
    text += f" {ruled_out}." if ruled_out else ""
    memory = run.machine.get("memory")
    if memory:
        text += (f" Memory: {memory['per_instance_bytes'] / 2**20:.0f} MB per instance measured, "
                 f"{memory['available_bytes'] / 2**20:.0f} MB for the model's instances.")
    return Section("space", "Search space", text, [Table(["setting", "values"], rows)])


def _bar_verdicts(run: TuneRun) -> list[dict[str, Any]]:
    chosen = run.recommended
    validation = run.validations.get(chosen.candidate) if chosen else None
    if validation is None or validation.ratio is None:
        return []
    generation = run.base.task == "generation"
    rows = [{"target": ("TTFT p99 at the level ÷ single-stream TTFT p50" if generation
                        else "p99 at 50% of max throughput ÷ single-request p50"),
             "bar": f"≤ {validation.bar:g}×", "measured": round(validation.ratio, 2),
             "verdict": "met" if validation.ratio <= validation.bar else "missed",
             "detail": f"{validation.loaded_ms:.1f} ms vs {validation.single_ms:.1f} ms", "figure": PARETO}]
    if validation.ceiling_ratio is not None:
        rows.append({"target": "max throughput ÷ in-process ceiling", "bar": "≥ 0.95×",
                     "measured": round(validation.ceiling_ratio, 3),
                     "verdict": "met" if validation.ceiling_ratio >= 0.95 else "missed",
                     "detail": chosen.candidate if chosen else "", "figure": PARETO})
    return rows


# -- figures of one measurement --------------------------------------------------
def _figure_headers(run: TuneRun) -> list[str]:
    unit = run.options.objective.unit
    if run.base.task == "generation":
        return [f"objective ({unit})", "±", "at", "tokens/s", "TTFT p50 ms", "TTFT p99 ms", "ITL p99 ms",
                "Triton queue ms", "engine TTFT ms", "decode batch", "memory MB"]
    return [f"objective ({unit})", "±", "at", "items/s", "p50 ms", "p99 ms", "queue ms", "compute ms",
            "batch", "memory MB"]


def _figures(run: TuneRun, m: Measurement) -> list[Any]:
    level = m.best_level or _lowest_latency(m.levels)
    objective = run.options.objective
    score = objective.shown(m.score)
    if level is None:
        return [score, None, None, *([None] * (8 if run.base.task == "generation" else 7))]
    noise = f"{level.noise:.0%}" if level.noise != float("inf") else "?"
    server = level.server or {}
    memory = round(m.memory_mb) if m.memory_mb else None
    if run.base.task == "generation":
        return [score, noise, level.label(), level.tokens_per_s, level.ttft_ms.get("p50"),
                level.ttft_ms.get("p99"), level.itl_ms.get("p99"), server.get("queue_ms"),
                server.get("engine_ttft_ms"), server.get("batch"), memory]
    return [score, noise, level.label(), level.throughput, level.latency_ms.get("p50"),
            level.latency_ms.get("p99"), server.get("queue_ms"), server.get("compute_ms"),
            server.get("batch"), memory]


def _lowest_latency(levels: list[Level]) -> Level | None:
    measured = [lv for lv in levels if lv.latency_ms.get("p99") is not None]
    return min(measured, key=lambda lv: lv.latency_ms["p99"]) if measured else None


def _reason_kind(reason: str) -> str:
    """Group rejection messages by their cause (numbers differ between candidates)."""
    if "memory" in reason and not reason.startswith("["):
        return "not enough memory"
    first = re.split(r"[:;(]", reason, maxsplit=1)[0].strip()
    return re.sub(r"\d+", "N", first)[:100]


def _plain(value: Any) -> str:
    return "none" if value is None else str(list(value)) if isinstance(value, tuple) else str(value)


# -- raw data --------------------------------------------------------------------
def _results(run: TuneRun, patch: SpecPatch | None) -> dict[str, Any]:
    return {
        "options": run.options.to_dict(), "machine": run.machine, "workload": run.workload.to_dict(),
        "start": run.start.key if run.start else None,
        "recommended": run.recommended.candidate if run.recommended else None,
        "recommendation": run.recommendation, "interrupted": run.interrupted, "wall_s": round(run.wall_s, 1),
        "outcomes": {mode: {"stop_reason": o.stop_reason, "spent_s": round(o.spent_s, 1),
                            "complete": o.complete, "replayed": o.replayed,
                            "best": o.best.candidate if o.best else None,
                            "measurements": [m.to_dict() for m in o.measurements]}
                     for mode, o in run.outcomes.items()},
        "validations": {k: v.to_dict() for k, v in run.validations.items()},
        "patch": {"changes": {k: [a, b] for k, (a, b) in patch.changes.items()}, "diff": patch.diff}
        if patch else None,
        "notes": run.notes,
    }


def _write_candidates_csv(run: TuneRun, path: Path) -> None:
    headers = ["mode", "fidelity", "settings", *_figure_headers(run), "seconds", "reload_s", "failed",
               "last_limit_hit"]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(headers)
        for mode, outcome in run.outcomes.items():
            for m in outcome.measurements:
                writer.writerow([mode, m.fidelity, m.candidate, *_figures(run, m), round(m.seconds, 2),
                                 round(m.reload_s, 2), m.failed or "", m.violation or ""])
