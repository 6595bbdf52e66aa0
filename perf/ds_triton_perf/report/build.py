"""From results to a :class:`Report`: per model, each table with the figure that explains it.

Embedding models keep Triton's execution statistics (batch sizes per
execution, queue vs compute), which mean what they say there. For a
generation model (decoupled, one request per execution) those numbers are
meaningless, so its batching and time sections come from the engine's own
metrics and the step timeline instead.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ds_triton_perf.report import plots
from ds_triton_perf.report.document import Figure, Group, Report, Section, Table, anchor
from ds_triton_perf.results import BenchResults, LoadRun

if TYPE_CHECKING:
    from ds_triton_perf.kinds import Kind

HOW_TO_READ = [
    "Throughput is measured in closed loop (N requests always in flight); latency under load in "
    "open loop (Poisson arrivals at a fixed rate, latency counted from each request's intended "
    "send time, so a stalled server cannot hide its backlog).",
    "Ratios are this project ÷ the other system: above 1.0 this project is ahead. Targets are "
    "benchmark outputs (met/missed), not tests; each verdict links to the plot that explains it.",
    "Embedding: batching and time come from Triton's statistics (requests per execution, queue vs "
    "compute). Generation: Triton sees one request per execution, so batching and time come from "
    "the engine's metrics (decode-batch occupancy, time to first token) and its step timeline.",
]


def build_report(results: BenchResults) -> Report:
    """The report for a finished run (figures are drawn later, by the HTML writer)."""
    from ds_triton_perf.kinds import registry

    kinds = registry()
    groups = []
    for model in _models(results, {key for key, kind in kinds.items() if kind.joint}):
        generation = _is_generation(results, model)
        sections = _generation_sections(results, model) if generation else _embedding_sections(
            results, model)
        sections += _common_sections(results, model)
        for key, rows in results.extra.items():
            if key in kinds and not kinds[key].joint:
                section = _kind_section(results, kinds[key], model, [r for r in rows if r["model"] == model])
                if section is not None:
                    sections.append(section)
        groups.append(Group(anchor(model), model, _with_data(sections)))
    joint = [_kind_section(results, kinds[key], "", rows) for key, rows in results.extra.items()
             if key in kinds and kinds[key].joint]
    if any(joint):
        groups.append(Group("all-models", "All models together",
                            [s for s in joint if s is not None]))
    meta = results.meta
    header = [
        f"Machine: {meta.get('machine', '')}.",
        f"Command: {meta.get('command', '')}"
        f"{' (quick mode: short runs, fewer points)' if meta.get('quick') else ''}.",
        f"Server: {meta.get('server', '')}. Total time {meta.get('elapsed_s', 0):.0f} s.",
        f"Load average (1/5/15 min) at start {meta.get('load_average_start', '?')}, at end "
        f"{meta.get('load_average_end', '?')}: above ~0.5 other work shared the CPU.",
    ]
    return Report(title=f"Benchmark report ({meta.get('date', '')})", header=header,
                  verdicts=results.targets, groups=[g for g in groups if g.sections],
                  how_to_read=HOW_TO_READ, notes=results.notes)


def _with_data(sections: list[Section]) -> list[Section]:
    """Tables without rows dropped (a run of a few scenarios fills a few sections); a section stays
    while it has a table or a figure (figures without data are not drawn, see the HTML writer)."""
    for section in sections:
        section.tables = [t for t in section.tables if t.rows]
    return [s for s in sections if s.tables or s.figures]


def _kind_section(results: BenchResults, kind: Kind, model: str,
                  rows: list[dict[str, Any]]) -> Section | None:
    """A kind's section; a kind whose section fails costs a note, not the report."""
    try:
        return kind.section(model, rows, results)
    except Exception as exc:
        note = f"{kind.key}: its report section could not be built ({type(exc).__name__}: {exc})"
        if note not in results.notes:  # the report is built twice (summary.md, report.html)
            results.notes.append(note)
        return None


def _models(results: BenchResults, joint: set[str]) -> list[str]:
    return sorted({r.model for r in results.load_runs} | {m for m, _ in results.ceiling}
                  | {p.model for p in results.perf_analyzer} | {m for m, _ in results.static_batches}
                  | {g.run.model for g in results.genai_perf} | {t["model"] for t in results.targets
                                                                 if t.get("model")}
                  | {r["model"] for key, rows in results.extra.items() if key not in joint
                     for r in rows if r.get("model")})


def _is_generation(results: BenchResults, model: str) -> bool:
    return (any(m == model for m, _ in results.static_batches)
            or any(r.model == model and r.result.ttft_ms for r in results.load_runs)
            or any(g.run.model == model for g in results.genai_perf))


def _figure(results: BenchResults, model: str, key: str, title: str, caption: str,
            draw: Callable[[BenchResults, str], bytes | None]) -> Figure:
    return Figure(anchor(model, key), title, caption, functools.partial(draw, results, model))


# -- embedding -----------------------------------------------------------------
def _embedding_sections(results: BenchResults, model: str) -> list[Section]:
    runs = [r for r in results.load_runs if r.model == model]
    return [
        Section(anchor(model, "throughput-section"), "Throughput: this project, peers and the ceiling",
                "Best closed-loop throughput of each system on the same texts, and the in-process "
                "forward loop without a server (the ceiling).",
                [_comparisons(results, model)],
                [_figure(results, model, "throughput", "Throughput vs concurrency",
                         "Where this project's curve flattens below the dashed ceiling line, the "
                         "server (not the model) limits throughput.", plots.throughput_vs_concurrency)]),
        Section(anchor(model, "latency-section"), "Latency under load",
                "Every load-generator run; open-loop rates are shares of the best closed-loop "
                "throughput.", [_load_table(runs)],
                [_figure(results, model, "latency", "Latency vs throughput (open loop)",
                         "p99 (dashed) should stay near p50 until close to the maximum rate; a p99 "
                         "that rises early means queueing stalls.", plots.latency_vs_throughput),
                 _figure(results, model, "latency-histogram", "Latency histogram and CDF",
                         "A long right tail in the CDF is what p99 measures; compare the systems at "
                         "the same concurrency.", plots.latency_histogram_and_cdf)]),
        Section(anchor(model, "batching-section"), "Batching (Triton's executions)",
                "Requests per model execution, from Triton's statistics diffed over each run.",
                [_batch_table(runs)],
                [_figure(results, model, "batching", "Execution batch-size distribution",
                         "Mass near batch size 1 under high concurrency means the dynamic batcher "
                         "is not merging requests.", plots.batch_size_distribution)]),
        Section(anchor(model, "time-section"), "Where the time goes (Triton's statistics)",
                "Mean server time per request: waiting in Triton's queue vs the model's compute.",
                [_stage_table(runs)],
                [_figure(results, model, "time", "Queue vs compute per request",
                         "A large queue share at low load means the batcher waits too long; at high "
                         "load, that the instances are saturated.", plots.queue_vs_compute)]),
    ]


# -- generation ----------------------------------------------------------------
def _generation_sections(results: BenchResults, model: str) -> list[Section]:
    runs = [r for r in results.load_runs if r.model == model]
    static = [[b.batch_size, b.requests, b.useful_tokens, b.generated_tokens, b.seconds, b.tokens_per_s]
              for m, b in results.static_batches if m == model]
    tables = [_comparisons(results, model)]
    if static:
        tables.append(Table(["batch", "requests", "useful tokens", "generated tokens", "s",
                             "useful tokens/s"], static, "In-process static batches (no server)"))
    return [
        Section(anchor(model, "throughput-section"), "Throughput: streams vs static batches",
                "Generated tokens/s of concurrent streams (in-flight batching) against in-process "
                "static batches of the same requests (only requested tokens count).", tables,
                [_figure(results, model, "throughput", "Tokens/s vs concurrent streams",
                         "Streams should rise above the dashed static-batch line once enough "
                         "streams share each decode step.", plots.throughput_vs_concurrency)]),
        Section(anchor(model, "latency-section"), "Latency: streams",
                "Time to first token (TTFT) and inter-token latency (ITL) as the client sees them.",
                [_stream_table(runs)],
                [_figure(results, model, "latency", "TTFT and ITL vs streams",
                         "TTFT p99 (dashed) growing faster than p50 means new requests wait behind "
                         "running steps.", plots.stream_latency)]),
        Section(anchor(model, "batching-section"), "Batching (engine decode-batch occupancy)",
                "Sequences advanced per decode step, from ds_triton_generation_batch_occupancy "
                "diffed over each run (Triton's own batch size is always 1 for this decoupled model).",
                [_occupancy_table(runs)],
                [_figure(results, model, "batching", "Decode-batch occupancy",
                         "At N streams most decode steps should carry about N sequences; mass at low "
                         "occupancy means streams are not sharing steps.", plots.decode_occupancy)]),
        Section(anchor(model, "time-section"), "Where the time goes (engine)",
                "TTFT split into Triton's queue, the wait inside the engine, the prefill forward and "
                "delivery; time per decode step and tokens per step (engine metrics and step "
                "timeline).", [_generation_time_table(runs)],
                [_figure(results, model, "time", "TTFT by part; decode step time and tokens per step",
                         "A growing engine wait means new requests wait for the step in flight; "
                         "step time rising faster than tokens per step means batching stopped paying.",
                         plots.generation_time)]),
    ]


def _common_sections(results: BenchResults, model: str) -> list[Section]:
    sections = [_timeline_section(results, model)]
    pa = [p for p in results.perf_analyzer if p.model == model]
    if pa:
        sections.append(Section(anchor(model, "perf-analyzer"), "perf_analyzer runs",
                                "Triton's own load tool against this project's server.", [Table(
            ["scenario", "mode", "level", "batch", "protocol", "infer/s", "p50 ms", "p99 ms",
             "queue ms", "infer ms", "server batch"],
            [[p.scenario, p.result.run.mode, p.result.run.level, p.result.run.batch_size,
              p.result.run.protocol + (" stream" if p.result.run.streaming else ""),
              p.result.throughput if p.result.ok else "FAILED", p.result.latency_ms.get("p50"),
              p.result.latency_ms.get("p99"), _ms(p.result.server_us.get("queue")),
              _ms(p.result.server_us.get("compute_infer")),
              p.server.achieved_batch_size if p.server else None] for p in pa])]))
    genai = [g for g in results.genai_perf if g.run.model == model]
    if genai:
        sections.append(Section(anchor(model, "genai-section"), "genai-perf (streaming, synthetic prompts)",
                                "NVIDIA's LLM benchmark tool over gRPC streaming (times in ms).", [Table(
            ["concurrency", "output tokens/s", "req/s", "TTFT p50", "TTFT p99", "ITL p50", "ITL p99",
             "request p99"],
            [[g.run.concurrency, g.output_tokens_per_s if g.ok else "FAILED", g.requests_per_s,
              *(g.metrics.get(m, {}).get(p) for m, p in (
                  ("time_to_first_token", "p50"), ("time_to_first_token", "p99"),
                  ("inter_token_latency", "p50"), ("inter_token_latency", "p99"),
                  ("request_latency", "p99")))] for g in genai])],
            [_figure(results, model, "genai", "genai-perf latency vs concurrency",
                     "ITL p50 at 16 streams against 1 stream is the batching cost per token.",
                     plots.genai_perf)]))
    ceiling = [[p.texts, p.padding, p.batch_size, p.items_per_s, p.batch_latency_ms]
               for m, p in results.ceiling if m == model]
    if ceiling:
        sections.append(Section(anchor(model, "ceiling"), "In-process ceiling and naive loop (no server)",
                                "The model's forward loop in this process at fixed batch sizes.",
                                [Table(["texts", "padding", "batch", "texts/s", "ms per batch"], ceiling)]))
    return sections


def _timeline_section(results: BenchResults, model: str) -> Section:
    rows = [[run_label, s.steps, _phases(s.steps_by_phase), s.decode_step_ms, s.decode_gap_ms,
             None if s.decode_gap_share is None else 100.0 * s.decode_gap_share, s.decode_rows,
             s.tokens_per_step, s.prefill_ms, s.max_queue_depth]
            for run_label, s in ((plots.run_label(r), r.steps) for r in results.load_runs
                                 if r.model == model and r.steps)]
    text = ("One record per forward pass, written by the server when DS_TRITON_PROFILE_DIR is set "
            "(the bench sets it for a server it starts), cut into each run's window.")
    if not rows:
        text += " No step timeline was recorded in this run."
    return Section(anchor(model, "timeline-section"), "Step timeline", text,
                   [Table(["run", "steps", "steps by phase", "decode step ms", "gap ms", "gap % of step",
                           "rows per decode", "tokens per forward", "prefill ms", "max queue"], rows)]
                   if rows else [],
                   [_figure(results, model, "timeline", "Step timeline",
                            "Bars are forward passes, white space the time between them; gaps that "
                            "grow with load are time lost outside the model.", plots.step_timeline)])


# -- tables ----------------------------------------------------------------------
def _comparisons(results: BenchResults, model: str) -> Table:
    return Table(["texts", "system", "items/s", "at", "p99 ms at best", "project ÷ system"],
                 [[c["texts"], c["system"], c["best_items_per_s"], c["at"], c["p99_ms_at_best"],
                   c["project_ratio"]] for c in results.comparisons if c["model"] == model])


def _load_table(runs: list[LoadRun]) -> Table:
    return Table(["scenario", "system", "texts", "load", "req/s", "texts/s", "p50", "p90", "p99",
                  "p99.9", "max", "errors", "loadgen CPU"],
                 [[r.scenario, r.system, r.texts, _load(r), r.result.throughput_rps, r.result.items_per_s,
                   *(r.result.latency_ms[k] for k in ("p50", "p90", "p99", "p99.9", "max")),
                   r.result.error_count, f"{r.result.loadgen_cpu_cores:.2f} cores"] for r in runs],
                 "Latency in ms")


def _stream_table(runs: list[LoadRun]) -> Table:
    return Table(["scenario", "streams", "req/s", "tokens/s", "TTFT p50", "TTFT p99", "ITL p50", "ITL p99",
                  "request p99", "errors", "loadgen CPU"],
                 [[r.scenario, r.result.spec.concurrency, r.result.throughput_rps, r.result.tokens_per_s,
                   r.result.ttft_ms.get("p50"), r.result.ttft_ms.get("p99"), r.result.itl_ms.get("p50"),
                   r.result.itl_ms.get("p99"), r.result.latency_ms["p99"], r.result.error_count,
                   f"{r.result.loadgen_cpu_cores:.2f} cores"] for r in runs if r.result.ttft_ms],
                 "Latency in ms")


def _batch_table(runs: list[LoadRun]) -> Table:
    return Table(["run", "executions", "requests per execution (mean)", "most common batch sizes"],
                 [[plots.run_label(r), r.server.executions, r.server.achieved_batch_size,
                   _top(r.server.batch_sizes)] for r in runs if r.server and r.server.executions])


def _stage_table(runs: list[LoadRun]) -> Table:
    return Table(["run", "requests", "queue ms", "compute input ms", "compute infer ms", "compute output ms"],
                 [[plots.run_label(r), r.server.requests,
                   *(_ms(r.server.stage_us.get(s)) for s in plots.STAGE_COLOURS)]
                  for r in runs if r.server and r.server.requests])


def _occupancy_table(runs: list[LoadRun]) -> Table:
    return Table(["streams", "decode steps", "sequences per decode step (mean)", "forward passes by phase",
                  "generated tokens", "generated tokens per forward"],
                 [[r.result.spec.concurrency, r.engine.decode_steps, r.engine.occupancy_mean,
                   _phases(r.engine.forward_passes), r.engine.tokens, r.engine.tokens_per_step]
                  for r in runs if r.engine])


def _generation_time_table(runs: list[LoadRun]) -> Table:
    rows = []
    for run in runs:
        if not run.engine:
            continue
        parts = plots.ttft_parts(run) or {}
        steps = run.steps
        rows.append([run.result.spec.concurrency, run.result.ttft_ms.get("mean"), run.engine.ttft_ms,
                     *(parts.get(name) for name, _ in plots.TTFT_PARTS),
                     steps.decode_step_ms if steps else None,
                     None if not steps or steps.decode_gap_share is None else 100.0 * steps.decode_gap_share,
                     run.engine.tokens_per_step])
    return Table(["streams", "TTFT mean (client)", "TTFT mean (engine)", "Triton queue", "engine wait",
                  "prefill forward", "delivery", "decode step ms", "gap % of step",
                  "generated tokens per step"], rows,
                 "Means in ms; prefill and step times need the step timeline")


def _load(run: LoadRun) -> str:
    spec = run.result.spec
    return f"c={spec.concurrency}" if spec.mode == "closed" else f"{spec.rate:.1f}/s ({run.result.label})"


def _top(sizes: dict[int, int], count: int = 3) -> str:
    total = sum(sizes.values()) or 1
    best = sorted(sizes.items(), key=lambda kv: -kv[1])[:count]
    return ", ".join(f"{size} ({100.0 * n / total:.0f}%)" for size, n in best)


def _phases(counts: dict[str, int]) -> str:
    return ", ".join(f"{phase} {n}" for phase, n in counts.items())


def _ms(us: float | None) -> float | None:
    return None if us is None or (isinstance(us, float) and math.isnan(us)) else us / 1000.0


def cell(value: Any) -> str:
    """One table cell as text (shared by the HTML and markdown writers)."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)
