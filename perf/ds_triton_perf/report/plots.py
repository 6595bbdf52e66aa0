"""The report's figures, each a function from results to a PNG (bytes), axis units on every axis.

matplotlib runs headless (Agg); every figure is closed after rendering so a
long run never accumulates them. The one-line captions live with the
sections (:mod:`ds_triton_perf.report.build`), not in the images.
"""

from __future__ import annotations

import io
import math
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from ds_triton_perf.analysis import busiest_streams, ceiling_best
from ds_triton_perf.results import BenchResults, LoadRun
from ds_triton_perf.timeline import Step, read_steps, window

STAGE_COLOURS = {"queue": "#d62728", "compute_input": "#9467bd", "compute_infer": "#1f77b4",
                 "compute_output": "#2ca02c"}
PHASE_COLOURS = {"prefill": "#d62728", "mixed": "#ff7f0e", "decode": "#1f77b4", "embed": "#2ca02c"}
TTFT_PARTS = (("Triton queue", "#9467bd"), ("engine wait", "#d62728"), ("prefill forward", "#ff7f0e"),
              ("delivery", "#7f7f7f"))


def render(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=90)
    plt.close(figure)
    return buffer.getvalue()


def closed_runs(results: BenchResults, model: str) -> list[LoadRun]:
    return [r for r in results.load_runs if r.model == model and r.result.spec.mode == "closed"]


def run_label(run: LoadRun) -> str:
    spec = run.result.spec
    load = f"c={spec.concurrency}" if spec.mode == "closed" else f"{spec.rate:.0f}/s"
    return f"{run.system} {run.texts} {load}"


# -- throughput and latency ---------------------------------------------------
def throughput_vs_concurrency(results: BenchResults, model: str) -> bytes | None:
    runs = closed_runs(results, model)
    if not runs:
        return None
    generation = any(r.result.ttft_ms for r in runs)
    figure, axis = plt.subplots(figsize=(8, 4.2))
    series: dict[tuple[str, str], list[tuple[int, float]]] = defaultdict(list)
    for run in runs:
        value = run.result.tokens_per_s if generation else run.result.items_per_s
        series[(run.system, run.texts)].append((run.result.spec.concurrency, value))
    for (system, texts), points in sorted(series.items()):
        points.sort()
        axis.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=f"{system} ({texts})")
    for texts in sorted({r.texts for r in runs}):
        best = ceiling_best(results, model, texts)
        if best:
            axis.axhline(best[0], linestyle="--", alpha=0.6,
                         label=f"in-process ceiling ({texts}, batch {best[1]})")
    for name, static in results.static_batches:
        if name == model:
            axis.axhline(static.tokens_per_s, linestyle="--", color="#7f7f7f",
                         label=f"in-process static batches of {static.batch_size}")
    unit = "generated tokens / s" if generation else "texts / s"
    axis.set(title=f"{model}: throughput vs concurrency (closed loop)",
             xlabel="concurrent requests (streams)" if generation else "concurrent requests",
             ylabel=unit, xscale="log")
    axis.legend(fontsize=8)
    axis.grid(True, alpha=0.3)
    return render(figure)


def latency_vs_throughput(results: BenchResults, model: str) -> bytes | None:
    runs = [r for r in results.load_runs if r.model == model and r.result.spec.mode == "open"
            and not r.result.spec.phases]
    if not runs:
        return None
    figure, axis = plt.subplots(figsize=(8, 4.2))
    series: dict[tuple[str, str], list[LoadRun]] = defaultdict(list)
    for run in runs:
        series[(run.system, run.texts)].append(run)
    for (system, texts), items in sorted(series.items()):
        items.sort(key=lambda r: r.result.throughput_rps)
        x = [r.result.throughput_rps for r in items]
        line = axis.plot(x, [r.result.latency_ms["p50"] for r in items], marker="o",
                         label=f"{system} ({texts}) p50")[0]
        axis.plot(x, [r.result.latency_ms["p99"] for r in items], marker="^", linestyle="--",
                  color=line.get_color(), label=f"{system} ({texts}) p99")
    axis.set(title=f"{model}: latency vs achieved throughput (open loop, Poisson)",
             xlabel="achieved requests / s", ylabel="latency (ms, log scale)", yscale="log")
    axis.legend(fontsize=8)
    axis.grid(True, which="both", alpha=0.3)
    return render(figure)


def latency_histogram_and_cdf(results: BenchResults, model: str) -> bytes | None:
    """Per system, the closed-loop run at the project's best concurrency: histogram + CDF."""
    runs = closed_runs(results, model)
    if not runs:
        return None
    level = max((r for r in runs if r.system == "triton"), key=lambda r: r.result.items_per_s,
                default=runs[0]).result.spec.concurrency
    texts = runs[0].texts
    chosen = [r for r in runs if r.result.spec.concurrency == level and r.texts == texts]
    figure, (hist_ax, cdf_ax) = plt.subplots(1, 2, figsize=(11, 3.8))
    for run in chosen:
        buckets = list(run.result.latency_histogram.buckets())
        if not buckets:
            continue
        mids = [(low + high) / 2000.0 for low, high, _ in buckets]
        counts = [count for _, _, count in buckets]
        total = sum(counts)
        hist_ax.hist(mids, bins=40, weights=counts, histtype="step", label=run.system)
        cumulative, running = [], 0
        for count in counts:
            running += count
            cumulative.append(running / total)
        cdf_ax.plot(mids, cumulative, label=run.system)
    hist_ax.set(title=f"latency histogram (concurrency {level}, {texts} texts)",
                xlabel="latency (ms)", ylabel="requests (count)")
    cdf_ax.set(title="latency CDF", xlabel="latency (ms, log scale)", ylabel="fraction of requests (0–1)",
               xscale="log")
    cdf_ax.xaxis.set_minor_formatter(NullFormatter())  # log-axis minor labels overlap
    cdf_ax.grid(True, which="both", alpha=0.3)
    for axis in (hist_ax, cdf_ax):
        axis.legend()
    return render(figure)


def stream_latency(results: BenchResults, model: str) -> bytes | None:
    """TTFT and inter-token latency percentiles against the number of streams."""
    runs = sorted((r for r in closed_runs(results, model) if r.result.ttft_ms),
                  key=lambda r: r.result.spec.concurrency)
    if not runs:
        return None
    figure, axis = plt.subplots(figsize=(8, 4.2))
    x = [r.result.spec.concurrency for r in runs]
    for name, stats, marker in (("TTFT", "ttft_ms", "o"), ("ITL", "itl_ms", "s")):
        for pct, style in (("p50", "-"), ("p99", "--")):
            values = [getattr(r.result, stats).get(pct, math.nan) for r in runs]
            axis.plot(x, values, marker=marker, linestyle=style, label=f"{name} {pct}")
    axis.set(title=f"{model}: time to first token and inter-token latency vs streams",
             xlabel="concurrent streams", ylabel="latency (ms, log scale)", xscale="log", yscale="log")
    axis.xaxis.set_minor_formatter(NullFormatter())
    axis.legend(fontsize=8)
    axis.grid(True, which="both", alpha=0.3)
    return render(figure)


# -- batching ------------------------------------------------------------------
def batch_size_distribution(results: BenchResults, model: str) -> bytes | None:
    """Executions per batch size, from Triton's statistics, per closed-loop level."""
    runs = [(r, r.server) for r in closed_runs(results, model) if r.server and r.server.batch_sizes]
    if not runs:
        return None
    figure, axis = plt.subplots(figsize=(8, 4.2))
    width = 0.8 / len(runs)
    for index, (run, server) in enumerate(runs):
        sizes = sorted(server.batch_sizes)
        total = sum(server.batch_sizes.values())
        axis.bar([s + (index - (len(runs) - 1) / 2) * width for s in sizes],
                 [100.0 * server.batch_sizes[s] / total for s in sizes], width=width,
                 label=f"{run_label(run)}, mean {server.achieved_batch_size:.1f}")
    axis.set(title=f"{model}: Triton execution batch sizes", xlabel="batch size (requests per execution)",
             ylabel="executions (% of the run)")
    axis.legend(fontsize=7)
    return render(figure)


def decode_occupancy(results: BenchResults, model: str) -> bytes | None:
    """The engine's decode-batch occupancy (sequences per decode step), per stream level."""
    runs = [r for r in closed_runs(results, model) if r.engine and r.engine.decode_steps]
    if not runs:
        return None
    labels: list[str] = []
    for run in runs:
        labels += [k for k in run.engine.occupancy if k not in labels]  # type: ignore[union-attr]
    figure, axis = plt.subplots(figsize=(8, 4.2))
    width = 0.8 / len(runs)
    for index, run in enumerate(runs):
        engine = run.engine
        assert engine is not None
        total = sum(engine.occupancy.values()) or 1
        mean = f"{engine.occupancy_mean:.1f}" if engine.occupancy_mean is not None else "?"
        axis.bar([i + (index - (len(runs) - 1) / 2) * width for i in range(len(labels))],
                 [100.0 * engine.occupancy.get(label, 0) / total for label in labels], width=width,
                 label=f"{run.result.spec.concurrency} streams, mean {mean}")
    axis.set_xticks(range(len(labels)), labels)
    axis.set(title=f"{model}: decode-batch occupancy (engine metrics)",
             xlabel="sequences advanced by one decode step", ylabel="decode steps (% of the run)")
    axis.legend(fontsize=8)
    return render(figure)


# -- time breakdown --------------------------------------------------------------
def queue_vs_compute(results: BenchResults, model: str) -> bytes | None:
    """Average per-request server time split into queue and compute stages (stacked)."""
    labelled = [(run_label(r), r.server.stage_us) for r in results.load_runs
                if r.model == model and r.server and r.server.requests]
    labelled += [(f"PA {p.scenario} {p.result.run.level:g} b{p.result.run.batch_size}", p.server.stage_us)
                 for p in results.perf_analyzer if p.model == model and p.server and p.server.requests]
    if not labelled:
        return None
    figure, axis = plt.subplots(figsize=(max(8, 0.45 * len(labelled)), 4.6))
    bottoms = [0.0] * len(labelled)
    for stage, colour in STAGE_COLOURS.items():
        values = [stages.get(stage, 0.0) / 1000.0 for _, stages in labelled]
        axis.bar(range(len(labelled)), values, bottom=bottoms, color=colour, label=stage)
        bottoms = [b + v for b, v in zip(bottoms, values, strict=True)]
    axis.set_xticks(range(len(labelled)), [name for name, _ in labelled], rotation=70, fontsize=7,
                    ha="right")
    axis.set(title=f"{model}: server time per request, queue vs compute (Triton statistics)",
             xlabel="run (system, texts, load)", ylabel="ms per request (mean)")
    axis.legend()
    return render(figure)


def ttft_parts(run: LoadRun) -> dict[str, float] | None:
    """Mean TTFT of a stream run split into where it went (ms); ``None`` without engine metrics.

    Triton queue (Triton's statistics) + engine wait (arrival at the engine until its
    prefill step ran) + prefill forward (step timeline) + delivery (the rest: response
    thread, server, network, client) = the client's mean TTFT.
    """
    engine = run.engine
    client = run.result.ttft_ms.get("mean")
    if engine is None or engine.ttft_ms is None or client is None:
        return None
    queue = run.server.stage_us.get("queue", 0.0) / 1000.0 if run.server else 0.0
    prefill = run.steps.prefill_ms if run.steps and run.steps.prefill_ms is not None else 0.0
    prefill = min(prefill, engine.ttft_ms)
    return {"Triton queue": queue, "engine wait": max(0.0, engine.ttft_ms - prefill),
            "prefill forward": prefill, "delivery": max(0.0, client - engine.ttft_ms - queue)}


def generation_time(results: BenchResults, model: str) -> bytes | None:
    """Left: mean TTFT split into its parts; right: time per decode step and tokens per step."""
    runs = sorted((r for r in closed_runs(results, model) if r.engine),
                  key=lambda r: r.result.spec.concurrency)
    split = [(r, parts) for r in runs if (parts := ttft_parts(r))]
    if not split:
        return None
    figure, (ttft_ax, step_ax) = plt.subplots(1, 2, figsize=(11, 4))
    names = [f"{r.result.spec.concurrency} streams" for r, _ in split]
    bottoms = [0.0] * len(split)
    for part, colour in TTFT_PARTS:
        values = [parts[part] for _, parts in split]
        ttft_ax.bar(names, values, bottom=bottoms, color=colour, label=part)
        bottoms = [b + v for b, v in zip(bottoms, values, strict=True)]
    ttft_ax.set(title="time to first token, mean, by part", xlabel="run", ylabel="ms per request")
    ttft_ax.legend(fontsize=8)
    step_ms = [(r.steps.decode_step_ms if r.steps and r.steps.decode_step_ms else math.nan) for r in runs]
    per_step = [r.engine.tokens_per_step or math.nan for r in runs if r.engine]
    labels = [f"{r.result.spec.concurrency} streams" for r in runs]
    if any(not math.isnan(v) for v in step_ms):
        step_ax.bar(labels, step_ms, color="#1f77b4", label="decode step (forward + gap)")
        step_ax.set_ylabel("ms per decode step (step timeline)")
    else:
        itl = [r.result.itl_ms.get("p50", math.nan) for r in runs]
        step_ax.bar(labels, itl, color="#1f77b4", label="client ITL p50 (no step timeline)")
        step_ax.set_ylabel("ms per token (client ITL p50)")
    twin = step_ax.twinx()
    twin.plot(labels, per_step, color="#d62728", marker="o", label="generated tokens per step")
    twin.set_ylabel("generated tokens per step (count)")
    twin.set_ylim(bottom=0)
    step_ax.set(title="decode step time and tokens per step", xlabel="run")
    handles = step_ax.get_legend_handles_labels()
    twin_handles = twin.get_legend_handles_labels()
    step_ax.legend(handles[0] + twin_handles[0], handles[1] + twin_handles[1], fontsize=8, loc="upper left")
    return render(figure)


def genai_perf(results: BenchResults, model: str) -> bytes | None:
    runs = sorted((g for g in results.genai_perf if g.run.model == model and g.ok),
                  key=lambda g: g.run.concurrency)
    if not runs:
        return None
    figure, axis = plt.subplots(figsize=(8, 4.2))
    x = [g.run.concurrency for g in runs]
    for metric, name, marker in (("time_to_first_token", "TTFT", "o"), ("inter_token_latency", "ITL", "s")):
        for pct, style in (("p50", "-"), ("p99", "--")):
            axis.plot(x, [g.metrics.get(metric, {}).get(pct, math.nan) for g in runs], marker=marker,
                      linestyle=style, label=f"{name} {pct}")
    axis.set(title=f"{model}: genai-perf latency vs concurrency", xlabel="concurrent streams",
             ylabel="latency (ms, log scale)", xscale="log", yscale="log")
    axis.xaxis.set_minor_formatter(NullFormatter())
    axis.legend(fontsize=8)
    axis.grid(True, which="both", alpha=0.3)
    return render(figure)


# -- step timeline -------------------------------------------------------------------
def step_timeline(results: BenchResults, model: str) -> bytes | None:
    """Forward passes and the gaps between them: a zoom at the busiest run, and the whole run."""
    profile_dir = results.meta.get("profile_dir")
    if not profile_dir:
        return None
    steps = read_steps(Path(str(profile_dir)), model)
    if not steps:
        return None
    zooms = [(title, steps_in) for title, steps_in in _zoom_windows(results, model, steps) if steps_in]
    figure, axes = plt.subplots(len(zooms) + 1, 1, figsize=(11, 3.2 * (len(zooms) + 1)), squeeze=False)
    for axis, (title, chosen) in zip(axes[:, 0], zooms, strict=False):
        _draw_steps(axis, chosen, title)
    _draw_overview(axes[-1, 0], steps)
    return render(figure)


def _zoom_windows(results: BenchResults, model: str, steps: list[Step]) -> list[tuple[str, list[Step]]]:
    out = []
    busiest = busiest_streams(results, model) or max(
        (r for r in closed_runs(results, model) if r.system == "triton"),
        key=lambda r: r.result.spec.concurrency, default=None)
    if busiest is not None:
        start, end = busiest.result.window_unix
        middle = (start + end) / 2
        out.append((f"{run_label(busiest)}: 100 ms in the middle of the run",
                    window(steps, middle - 0.05, middle + 0.05)))
    for row in results.extra.get("long_prompt", []):
        if row["model"] == model and row.get("arrivals_unix"):
            arrival = row["arrivals_unix"][0]
            out.append((f"a {row['prompt_tokens']}-token prompt arrives at 0 ms among "
                        f"{row['streams']} streams", window(steps, arrival - 0.05, arrival + 0.25)))
            break
    return out


def _draw_steps(axis: plt.Axes, steps: list[Step], title: str) -> None:
    origin = steps[0].start
    for phase in sorted({s.phase for s in steps}):
        chosen = [s for s in steps if s.phase == phase]
        axis.barh([0] * len(chosen), [s.forward_ms for s in chosen],
                  left=[1000.0 * (s.start - origin) for s in chosen], height=0.8,
                  color=PHASE_COLOURS.get(phase, "#8c564b"), label=f"{phase} forward")
    axis.set_yticks([])
    axis.set(title=title, xlabel="time (ms); white space between bars = gap between forwards",
             ylabel="forward passes (bar length: ms)")
    twin = axis.twinx()
    twin.step([1000.0 * (s.start - origin) for s in steps], [s.rows for s in steps], where="post",
              color="black", linewidth=0.8, label="rows per step")
    twin.set_ylabel("rows per step (sequences)")
    twin.set_ylim(bottom=0)
    handles = axis.get_legend_handles_labels()
    twin_handles = twin.get_legend_handles_labels()
    axis.legend(handles[0] + twin_handles[0], handles[1] + twin_handles[1], fontsize=7, loc="upper right")


def _draw_overview(axis: plt.Axes, steps: list[Step]) -> None:
    origin = steps[0].t
    seconds = int(steps[-1].t - origin) + 1
    busy = [0.0] * seconds
    rows: list[list[int]] = [[] for _ in range(seconds)]
    for step in steps:
        second = int(step.t - origin)
        busy[second] += step.forward_ms / 10.0  # ms per 1000 ms → percent
        rows[second].append(step.rows)
    x = list(range(seconds))
    axis.fill_between(x, [min(b, 100.0) for b in busy], step="post", alpha=0.4, color="#1f77b4",
                      label="time in forward passes (%)")
    axis.set(title="whole run: share of each second spent in forward passes (all instances)",
             xlabel="time since the first step (s)", ylabel="busy (% of the second)")
    axis.set_ylim(0, max(100.0, max(busy) * 1.05))
    twin = axis.twinx()
    twin.plot(x, [sum(r) / len(r) if r else math.nan for r in rows], color="black", linewidth=0.8,
              label="mean rows per step")
    twin.set_ylabel("rows per step (mean)")
    twin.set_ylim(bottom=0)
    handles = axis.get_legend_handles_labels()
    twin_handles = twin.get_legend_handles_labels()
    axis.legend(handles[0] + twin_handles[0], handles[1] + twin_handles[1], fontsize=7, loc="upper right")
