"""``summary.md``: the tables a reader needs, also printed at the end of a run."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ds_triton_perf.results import BenchResults


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def summary_markdown(results: BenchResults) -> str:
    meta = results.meta
    parts = [
        f"# Benchmark summary ({meta.get('date', '')})",
        f"Machine: {meta.get('machine', '')}. Command: `{meta.get('command', '')}`"
        f"{' (quick mode: short runs, fewer points)' if meta.get('quick') else ''}. "
        f"Server: {meta.get('server', '')}. Total time {meta.get('elapsed_s', 0):.0f} s. "
        f"Load average (1/5/15 min) at start {meta.get('load_average_start', '?')}, "
        f"at end {meta.get('load_average_end', '?')}: above ~0.5 other work shared the CPU.",
        "Ratios are **this project ÷ the other system** (above 1.0: this project is ahead).",
    ]
    if results.comparisons:
        parts += ["## Peers and ceiling (best closed-loop throughput)", table(
            ["model", "texts", "system", "items/s", "at", "p99 ms at best", "project ÷ system"],
            [[c["model"], c["texts"], c["system"], c["best_items_per_s"], c["at"], c["p99_ms_at_best"],
              c["project_ratio"]] for c in results.comparisons])]
    if results.targets:
        parts += ["## Targets (benchmark outputs, not tests)", table(
            ["target", "bar", "measured", "verdict", "detail"],
            [[t["target"], t["bar"], t["measured"], t["verdict"], t["detail"]] for t in results.targets])]
    if results.load_runs:
        parts += ["## Load generator runs (latency ms; items are texts or tokens)", table(
            ["model", "scenario", "system", "texts", "load", "req/s", "items/s", "p50", "p90", "p99",
             "p99.9", "max", "TTFT p50", "TTFT p99", "ITL p50", "errors", "server batch", "queue ms",
             "infer ms", "loadgen CPU"],
            [_load_row(r) for r in results.load_runs])]
    if results.perf_analyzer:
        parts += ["## perf_analyzer runs", table(
            ["scenario", "mode", "level", "batch", "protocol", "infer/s", "p50 ms", "p99 ms", "queue ms",
             "infer ms", "server batch"],
            [[p.scenario, p.result.run.mode, p.result.run.level, p.result.run.batch_size,
              p.result.run.protocol + (" stream" if p.result.run.streaming else ""),
              p.result.throughput if p.result.ok else "FAILED", p.result.latency_ms.get("p50"),
              p.result.latency_ms.get("p99"), _ms(p.result.server_us.get("queue")),
              _ms(p.result.server_us.get("compute_infer")),
              p.server.achieved_batch_size if p.server else None] for p in results.perf_analyzer])]
    if results.genai_perf:
        parts += ["## genai-perf (streaming, synthetic prompts; ms)", table(
            ["model", "concurrency", "output tokens/s", "req/s", "TTFT p50", "TTFT p99", "ITL p50",
             "ITL p99", "request p99"],
            [[g.run.model, g.run.concurrency, g.output_tokens_per_s if g.ok else "FAILED",
              g.requests_per_s, *(g.metrics.get(m, {}).get(p) for m, p in (
                  ("time_to_first_token", "p50"), ("time_to_first_token", "p99"),
                  ("inter_token_latency", "p50"), ("inter_token_latency", "p99"),
                  ("request_latency", "p99")))] for g in results.genai_perf])]
    if results.ceiling:
        parts += ["## In-process ceiling and naive loop (no server)", table(
            ["model", "texts", "padding", "batch", "texts/s", "ms per batch"],
            [[m, p.texts, p.padding, p.batch_size, p.items_per_s, p.batch_latency_ms]
             for m, p in results.ceiling])]
    if results.static_batches:
        parts += ["## In-process static batches (generation baseline, no server)", table(
            ["model", "batch", "requests", "useful tokens", "generated tokens", "s", "useful tokens/s"],
            [[m, b.batch_size, b.requests, b.useful_tokens, b.generated_tokens, b.seconds, b.tokens_per_s]
             for m, b in results.static_batches])]
    if results.notes:
        parts += ["## Notes", "\n".join(f"- {note}" for note in results.notes)]
    return "\n\n".join(parts) + "\n"


def _load_row(run: Any) -> list[Any]:
    r, server = run.result, run.server
    load = f"c={r.spec.concurrency}" if r.spec.mode == "closed" else f"{r.spec.rate:.1f}/s ({r.label})"
    lat = r.latency_ms
    return [run.model, run.scenario, run.system, run.texts, load, r.throughput_rps, r.items_per_s,
            lat["p50"], lat["p90"], lat["p99"], lat["p99.9"], lat["max"], r.ttft_ms.get("p50"),
            r.ttft_ms.get("p99"), r.itl_ms.get("p50"), r.error_count,
            server.achieved_batch_size if server else None,
            _ms(server.stage_us["queue"]) if server else None,
            _ms(server.stage_us["compute_infer"]) if server else None, f"{r.loadgen_cpu_cores:.2f} cores"]


def _ms(us: float | None) -> float | None:
    return None if us is None else us / 1000.0


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"
    return str(value).replace("|", "\\|")
