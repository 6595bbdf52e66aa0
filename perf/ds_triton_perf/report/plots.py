"""The report's figures, each a function from results to a PNG (bytes).

matplotlib runs headless (Agg); every figure is closed after rendering so a
long run never accumulates them.
"""

from __future__ import annotations

import io
from collections import defaultdict
from collections.abc import Callable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from ds_triton_perf.analysis import ceiling_best
from ds_triton_perf.results import BenchResults, LoadRun

STAGE_COLOURS = {"queue": "#d62728", "compute_input": "#9467bd", "compute_infer": "#1f77b4",
                 "compute_output": "#2ca02c"}


def render(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=90)
    plt.close(figure)
    return buffer.getvalue()


def latency_histogram_and_cdf(results: BenchResults, model: str) -> bytes | None:
    """Per system, the closed-loop run at the project's best concurrency: histogram + CDF."""
    runs = _closed(results, model)
    if not runs:
        return None
    level = max((r for r in runs if r.system == "triton"), key=lambda r: r.result.items_per_s,
                default=runs[0]).result.spec.concurrency
    texts = runs[0].texts
    chosen = [r for r in runs if r.result.spec.concurrency == level and r.texts == texts]
    figure, (hist_ax, cdf_ax) = plt.subplots(1, 2, figsize=(11, 4))
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
    hist_ax.set(title=f"{model}: latency histogram (concurrency {level}, {texts} texts)",
                xlabel="latency (ms)", ylabel="requests")
    cdf_ax.set(title="latency CDF", xlabel="latency (ms)", ylabel="fraction of requests", xscale="log")
    cdf_ax.xaxis.set_minor_formatter(NullFormatter())  # log-axis minor labels overlap
    cdf_ax.grid(True, which="both", alpha=0.3)
    for axis in (hist_ax, cdf_ax):
        axis.legend()
    return render(figure)


def throughput_vs_concurrency(results: BenchResults, model: str) -> bytes | None:
    runs = _closed(results, model)
    if not runs:
        return None
    figure, axis = plt.subplots(figsize=(8, 4.5))
    series: dict[tuple[str, str], list[tuple[int, float]]] = defaultdict(list)
    for run in runs:
        series[(run.system, run.texts)].append((run.result.spec.concurrency, run.result.items_per_s))
    for (system, texts), points in sorted(series.items()):
        points.sort()
        axis.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=f"{system} ({texts})")
    for texts in sorted({r.texts for r in runs}):
        best = ceiling_best(results, model, texts)
        if best:
            axis.axhline(best[0], linestyle="--", alpha=0.6,
                         label=f"in-process ceiling ({texts}, batch {best[1]})")
    axis.set(title=f"{model}: throughput vs concurrency (closed loop)", xlabel="concurrent requests",
             ylabel="texts / s", xscale="log")
    axis.legend(fontsize=8)
    axis.grid(True, alpha=0.3)
    return render(figure)


def latency_vs_throughput(results: BenchResults, model: str) -> bytes | None:
    runs = [r for r in results.load_runs if r.model == model and r.result.spec.mode == "open"]
    if not runs:
        return None
    figure, axis = plt.subplots(figsize=(8, 4.5))
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
             xlabel="achieved requests / s", ylabel="latency (ms)", yscale="log")
    axis.legend(fontsize=8)
    axis.grid(True, which="both", alpha=0.3)
    return render(figure)


def batch_size_distribution(results: BenchResults, model: str) -> bytes | None:
    """Executions per batch size, from Triton's statistics, per closed-loop level."""
    runs = [(r, r.server) for r in _closed(results, model) if r.server and r.server.batch_sizes]
    if not runs:
        return None
    figure, axis = plt.subplots(figsize=(8, 4.5))
    width = 0.8 / len(runs)
    for index, (run, server) in enumerate(runs):
        sizes = sorted(server.batch_sizes)
        axis.bar([s + (index - len(runs) / 2) * width for s in sizes],
                 [server.batch_sizes[s] for s in sizes], width=width,
                 label=f"{run.system} c={run.result.spec.concurrency} ({run.texts}), "
                       f"mean {server.achieved_batch_size:.1f}")
    axis.set(title=f"{model}: achieved batch sizes (server executions)", xlabel="batch size",
             ylabel="executions")
    axis.legend(fontsize=7)
    return render(figure)


def queue_vs_compute(results: BenchResults, model: str) -> bytes | None:
    """Average per-request server time split into queue and compute stages (stacked)."""
    labelled = [(f"{r.system} {r.texts} " + (f"c={r.result.spec.concurrency}" if r.result.spec.mode
                 == "closed" else f"{r.result.spec.rate:.0f}/s"), r.server.stage_us)
                for r in results.load_runs if r.model == model and r.server and r.server.requests]
    labelled += [(f"PA {p.scenario} {p.result.run.level:g} b{p.result.run.batch_size}", p.server.stage_us)
                 for p in results.perf_analyzer if p.model == model and p.server and p.server.requests]
    if not labelled:
        return None
    figure, axis = plt.subplots(figsize=(max(8, 0.45 * len(labelled)), 5))
    bottoms = [0.0] * len(labelled)
    for stage, colour in STAGE_COLOURS.items():
        values = [stages.get(stage, 0.0) / 1000.0 for _, stages in labelled]
        axis.bar(range(len(labelled)), values, bottom=bottoms, color=colour, label=stage)
        bottoms = [b + v for b, v in zip(bottoms, values, strict=True)]
    axis.set_xticks(range(len(labelled)), [name for name, _ in labelled], rotation=70, fontsize=7,
                    ha="right")
    axis.set(title=f"{model}: server time per request, queue vs compute", ylabel="ms per request")
    axis.legend()
    return render(figure)


def _closed(results: BenchResults, model: str) -> list[LoadRun]:
    return [r for r in results.load_runs if r.model == model and r.result.spec.mode == "closed"]


FIGURES: dict[str, Callable[[BenchResults, str], bytes | None]] = {
    "Latency histogram and CDF": latency_histogram_and_cdf,
    "Throughput vs concurrency": throughput_vs_concurrency,
    "Latency vs throughput": latency_vs_throughput,
    "Achieved batch-size distribution": batch_size_distribution,
    "Queue vs compute": queue_vs_compute,
}
