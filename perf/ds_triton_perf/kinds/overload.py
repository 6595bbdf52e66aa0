"""Overload: open-loop load at 3× measured capacity for 10 s, then back to 70% (issue 9).

One continuous open-loop run with a rate schedule: 70% of capacity (the
reference), a surge at 3×, then 70% again. Capacity is measured first, in the
same run, by a closed loop at the scenario's concurrency. Every request is
binned by the second it was *intended* to be sent, so the report sees latency
change second by second. Targets:

* rejected requests (``OverloadedError``: queue full, queue timeout, admission
  bound) answer within 50 ms of being sent;
* accepted requests during the surge keep p99 ≤ 3× their p99 at 70% load;
* goodput during the surge (items of successful requests finished per second)
  stays ≥ 90% of capacity;
* within 5 s of the surge ending, every second's p99 is back at the 70%-load
  level (≤ 1.5× its p99) with no rejections.

Latency is end-to-end for embedding and time to first token for generation
(a stream's total time depends on how many tokens it asked for).
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from typing import Any, Literal

from ds_triton_perf.histogram import Histogram
from ds_triton_perf.kinds import Kind, KindContext, Row, target
from ds_triton_perf.loadgen import LoadResult, LoadSpec, run_load
from ds_triton_perf.recorder import SecondBin
from ds_triton_perf.report.document import Figure, Section, Table, anchor
from ds_triton_perf.results import BenchResults
from ds_triton_perf.scenarios import ModelScenarios

REJECTED = "OverloadedError"


@dataclass(frozen=True)
class OverloadScenario:
    """One overload run (see the module docstring); ``quick_*`` apply with ``--quick``."""

    name: str = "overload"
    texts: str = ""
    protocol: Literal["http", "grpc"] = "grpc"
    capacity_concurrency: int = 32
    capacity_s: float = 5.0
    quick_capacity_s: float = 2.0
    reference_load: float = 0.7
    surge_load: float = 3.0
    reference_s: float = 8.0
    surge_s: float = 10.0
    after_s: float = 10.0
    quick_reference_s: float = 3.0
    quick_surge_s: float = 3.0
    quick_after_s: float = 4.0
    max_in_flight: int = 4096
    request_timeout_s: float = 30.0
    rejected_ms_bar: float = 50.0
    p99_ratio_bar: float = 3.0
    goodput_bar: float = 0.9
    recovery_s_bar: float = 5.0
    recovered_p99_factor: float = 1.5


def run(ctx: KindContext, scenarios: ModelScenarios, config: OverloadScenario) -> None:
    model = scenarios.model
    quick = ctx.quick
    capacity_spec = LoadSpec(mode="closed", concurrency=config.capacity_concurrency,
                             duration_s=config.quick_capacity_s if quick else config.capacity_s,
                             warmup_s=0.5 if quick else 1.0, request_timeout_s=config.request_timeout_s)
    ctx.log.step(f"{model}: overload {config.name}: capacity, closed loop c={config.capacity_concurrency}")
    capacity = asyncio.run(_drive(ctx, scenarios, config, capacity_spec))
    if not capacity.completed:
        ctx.results.notes.append(f"{model} overload {config.name}: capacity run completed nothing "
                                 f"({capacity.errors}); skipped")
        return
    rps, items_per_s = capacity.throughput_rps, capacity.items_per_s
    ctx.log.detail(f"capacity {rps:.1f} req/s ({items_per_s:.1f} items/s)")
    durations = ((config.quick_reference_s, config.quick_surge_s, config.quick_after_s) if quick else
                 (config.reference_s, config.surge_s, config.after_s))
    loads = (config.reference_load, config.surge_load, config.reference_load)
    phases = tuple((d, load * rps) for d, load in zip(durations, loads, strict=True))
    spec = LoadSpec(mode="open", phases=phases,
                    warmup_s=0.5, max_in_flight=config.max_in_flight, keep_bins=True,
                    request_timeout_s=config.request_timeout_s, drain_timeout_s=config.request_timeout_s)
    ctx.log.step(f"{model}: overload {config.name}: {loads[0]:g}× → {loads[1]:g}× → {loads[2]:g}× of "
                 f"{rps:.1f} req/s for {durations[0]:g}+{durations[1]:g}+{durations[2]:g} s")
    result = asyncio.run(_drive(ctx, scenarios, config, spec))
    row = analyse(result.bins, durations, rps, items_per_s, config,
                  metric="ttft" if scenarios.task == "generation" else "latency")
    row.update(scenario=config.name, texts=config.texts or scenarios.generation.prompts,
               loadgen_cpu_cores=round(result.loadgen_cpu_cores, 3),
               unfinished=result.errors.get("Unfinished", 0),
               window_unix=list(result.window_unix),
               bars={"rejected_ms": config.rejected_ms_bar, "p99_ratio": config.p99_ratio_bar,
                     "goodput": config.goodput_bar, "recovery_s": config.recovery_s_bar})
    ctx.add_row(KIND.key, model, row)
    ctx.log.detail(f"rejected p99 {_fmt(row['rejected_p99_ms'])} ms, "
                   f"accepted p99 {_fmt(row['surge_p99_ms'])} ms "
                   f"vs {_fmt(row['reference_p99_ms'])} ms, goodput {_fmt(row['goodput_ratio'])}× capacity, "
                   f"recovered after {_fmt(row['recovery_s'])} s")


async def _drive(ctx: KindContext, scenarios: ModelScenarios, config: OverloadScenario,
                 spec: LoadSpec) -> LoadResult:
    async with _target(ctx, scenarios, config) as request:
        return await run_load(request, spec, label=f"{scenarios.model} {config.name}",
                              progress=ctx.progress)


def _target(ctx: KindContext, scenarios: ModelScenarios, config: OverloadScenario) -> Any:
    url = ctx.server.grpc if config.protocol == "grpc" else ctx.server.http
    if scenarios.task == "generation":
        from ds_triton_perf.targets.generation import open_generation_target

        return open_generation_target(url, scenarios.model, scenarios.generation_requests(ctx.quick),
                                      config.protocol)
    from ds_triton_perf.targets import Endpoint, open_embedding_target
    from ds_triton_perf.texts import text_mix

    texts = text_mix(scenarios.text_weights(config.texts), count=256, seed=3)
    return open_embedding_target(Endpoint("triton", "triton", url, scenarios.model, config.protocol), texts)


def analyse(bins: list[SecondBin], durations: tuple[float, float, float], capacity_rps: float,
            capacity_items_per_s: float, config: OverloadScenario, metric: str) -> Row:
    """The overload row from per-second bins: phase summaries, the targets' values, the series."""
    reference_s, surge_s, after_s = durations
    bins = bins[:math.ceil(reference_s + surge_s + after_s)]
    first_surge, first_after = int(reference_s), int(reference_s + surge_s)
    reference, surge = bins[:first_surge], bins[first_surge:first_after]
    after = bins[first_after:]

    def merged(chosen: list[SecondBin], pick: str) -> Histogram:
        out = Histogram()
        for item in chosen:
            out.merge(getattr(item, pick))
        return out

    reference_p99 = merged(reference, metric).percentile(99) / 1000.0
    surge_p99 = merged(surge, metric).percentile(99) / 1000.0
    rejected = Histogram()
    for item in bins:
        if REJECTED in item.error_ms:
            rejected.merge(item.error_ms[REJECTED])
    goodput = sum(b.items_done for b in surge) / max(surge_s, 1e-9)
    level = config.recovered_p99_factor * reference_p99
    recovered = [not item.errors.get(REJECTED) and getattr(item, metric).total > 0
                 and getattr(item, metric).percentile(99) / 1000.0 <= level for item in after]
    recovery_s: float | None = None
    for index in range(len(recovered)):
        if all(recovered[index:]):
            recovery_s = float(index)
            break
    failures: dict[str, int] = {}
    for item in bins:
        for error, count in item.errors.items():
            if error != REJECTED:
                failures[error] = failures.get(error, 0) + count
    offered = [b.ok + sum(b.errors.values()) for b in bins]
    return {
        "metric": "TTFT" if metric == "ttft" else "latency",
        "capacity_rps": round(capacity_rps, 2), "capacity_items_per_s": round(capacity_items_per_s, 2),
        "reference_rps": round(config.reference_load * capacity_rps, 2),
        "surge_rps": round(config.surge_load * capacity_rps, 2),
        "reference_p99_ms": _round(reference_p99), "surge_p99_ms": _round(surge_p99),
        "p99_ratio": _round(surge_p99 / reference_p99) if reference_p99 > 0 else None,
        "surge_requests": sum(offered[first_surge:first_after]),
        "surge_accepted": sum(b.ok for b in surge),
        "rejected": rejected.total,
        "rejected_p99_ms": _round(rejected.percentile(99) / 1000.0) if rejected.total else None,
        "rejected_max_ms": _round((rejected.max_us or 0) / 1000.0) if rejected.total else None,
        "failed": sum(failures.values()), "failures": failures,
        "goodput_items_per_s": round(goodput, 2),
        "goodput_ratio": _round(goodput / capacity_items_per_s) if capacity_items_per_s else None,
        "recovery_s": recovery_s, "after_s": float(len(after)),
        "phases_s": list(durations),
        "series": {
            "offered_rps": offered, "ok_rps": [b.ok for b in bins],
            "rejected_rps": [b.errors.get(REJECTED, 0) for b in bins],
            "goodput_items_per_s": [b.items_done for b in bins],
            "p99_ms": [_round(getattr(b, metric).percentile(99) / 1000.0) for b in bins],
            "rejected_p99_ms": [_round(b.error_ms[REJECTED].percentile(99) / 1000.0)
                                if REJECTED in b.error_ms else None for b in bins],
        },
    }


def verdicts(results: BenchResults, rows: list[Row]) -> None:
    for row in rows:
        model, bars = row["model"], row["bars"]
        name = f"{model} overload" + ("" if row["scenario"] == "overload" else f" ({row['scenario']})")
        target(results, model, f"{name}: rejected requests answer within", bars["rejected_ms"],
               row["rejected_p99_ms"], lower_is_better=True, unit="ms", figure="overload",
               detail=f"p99 of {row['rejected']} rejections, from send" if row["rejected"]
               else "no request was rejected")
        target(results, model, f"{name}: accepted {row['metric']} p99 in the surge ÷ p99 at 70% load",
               bars["p99_ratio"], row["p99_ratio"], lower_is_better=True, figure="overload",
               detail=f"{_fmt(row['surge_p99_ms'])} ms vs {_fmt(row['reference_p99_ms'])} ms")
        target(results, model, f"{name}: goodput in the surge ÷ capacity", bars["goodput"],
               row["goodput_ratio"], figure="overload",
               detail=f"{row['goodput_items_per_s']:.1f} vs {row['capacity_items_per_s']:.1f} items/s")
        target(results, model, f"{name}: seconds until latency is back at the 70%-load level",
               bars["recovery_s"], row["recovery_s"], lower_is_better=True, unit="s", figure="overload",
               detail="" if row["recovery_s"] is not None else f"not back within {row['after_s']:g} s")


def section(model: str, rows: list[Row], results: BenchResults) -> Section | None:
    if not rows:
        return None
    table = Table(["scenario", "capacity req/s", "surge req/s", "p99 at 70% ms", "p99 in surge ms",
                   "accepted / offered in surge", "rejected (p99 ms)", "failed", "goodput ÷ capacity",
                   "recovered after s", "loadgen CPU"],
                  [[r["scenario"], r["capacity_rps"], r["surge_rps"], r["reference_p99_ms"],
                    r["surge_p99_ms"], f"{r['surge_accepted']} / {r['surge_requests']}",
                    f"{r['rejected']} ({_fmt(r['rejected_p99_ms'])})", r["failed"], r["goodput_ratio"],
                    r["recovery_s"], f"{r['loadgen_cpu_cores']:.2f} cores"] for r in rows],
                  f"p99 of {rows[0]['metric']}")
    figure = Figure(anchor(model, "overload"), "Overload: 70% → 3× → 70% of capacity",
                    "In the shaded surge, rejections should be fast (bottom, dashed) while accepted p99 "
                    "stays near its 70%-load level and completions stay near capacity.",
                    lambda: draw(rows[0]))
    return Section(anchor(model, "overload-section"), "Overload (3× capacity, then recovery)",
                   "Open loop: 70% of the measured capacity, a surge at 3×, then 70% again; requests are "
                   "binned by intended send time. Rejected = OverloadedError (queue full, queue timeout, "
                   "admission bound).", [table], [figure])


def draw(row: Row) -> bytes:
    from ds_triton_perf.report.plots import plt, render

    series = row["series"]
    seconds = list(range(len(series["offered_rps"])))
    start, end = row["phases_s"][0], row["phases_s"][0] + row["phases_s"][1]
    figure, (rate_ax, latency_ax) = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    for axis in (rate_ax, latency_ax):
        axis.axvspan(start, end, color="#d62728", alpha=0.08, label="surge")
        axis.grid(True, alpha=0.3)
    rate_ax.step(seconds, series["offered_rps"], where="post", label="offered")
    rate_ax.step(seconds, series["ok_rps"], where="post", label="accepted and succeeded")
    rate_ax.step(seconds, series["rejected_rps"], where="post", label="rejected")
    rate_ax.axhline(row["capacity_rps"], linestyle="--", color="#7f7f7f", label="measured capacity")
    rate_ax.set(title=f"{row['model']}: requests per second (by intended send time)", ylabel="requests / s")
    rate_ax.legend(fontsize=7, loc="upper right")
    latency_ax.plot(seconds, [math.nan if v is None else v for v in series["p99_ms"]], marker=".",
                    label=f"accepted {row['metric']} p99")
    latency_ax.plot(seconds, [math.nan if v is None else v for v in series["rejected_p99_ms"]], marker="x",
                    linestyle="--", label="rejection p99 (from send)")
    if row["reference_p99_ms"]:
        latency_ax.axhline(row["reference_p99_ms"], color="#2ca02c", linestyle=":", label="p99 at 70% load")
    latency_ax.set(xlabel="time since the start of the window (s)", ylabel="ms (log scale)", yscale="log")
    latency_ax.legend(fontsize=7, loc="upper right")
    return render(figure)


def _round(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else round(value, 3)


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.3g}"


KIND = Kind(key="overload", title="Overload", config=OverloadScenario, run=run, verdicts=verdicts,
            section=section)

