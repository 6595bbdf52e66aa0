"""A complete BenchResults built by hand: every table, figure and verdict kind has data.

Used by the report tests so they exercise every section without a server; the
generation runs' windows fall inside the step-timeline fixture
(``fixtures/profile``), which follows the contract ``ds_triton.profiling`` writes.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from ds_triton_perf.analysis import compare
from ds_triton_perf.genai_perf import GenaiPerfResult, GenaiPerfRun
from ds_triton_perf.histogram import Histogram
from ds_triton_perf.kinds import logprobs, long_prompt, overload, soak
from ds_triton_perf.loadgen import LoadResult, LoadSpec
from ds_triton_perf.memory import MB, MemorySample, ProcessMemory
from ds_triton_perf.peers.ceiling import LENGTH_GROUPS, NAIVE, CeilingPoint
from ds_triton_perf.peers.static_batches import StaticBatchResult
from ds_triton_perf.recorder import SecondBin
from ds_triton_perf.results import BenchResults, LoadRun
from ds_triton_perf.triton_stats import ServerBreakdown
from tests.perf.test_server_side_reading import PROFILE_DIR, T0

EMBEDDING, GENERATION = "text_embedding", "text_generation"


def histogram(values_ms: list[float]) -> Histogram:
    out = Histogram()
    for value in values_ms:
        out.record(value * 1000.0)
    return out


def load_result(mode: str, level: float, items_per_s: float, p50: float, p99: float,
                window: tuple[float, float] = (0.0, 0.0), ttft: tuple[float, float] | None = None,
                itl: tuple[float, float] | None = None, label: str = "") -> LoadResult:
    latencies = histogram([p50] * 98 + [p99] * 2)
    spec = LoadSpec(mode=mode, concurrency=int(level) if mode == "closed" else 1,  # type: ignore[arg-type]
                    rate=level if mode == "open" else 0.0, duration_s=2.0)
    return LoadResult(
        label=label or str(level), spec=spec, duration_s=2.0, completed=100, throughput_rps=items_per_s,
        items_per_s=items_per_s, tokens_per_s=items_per_s if ttft else 0.0,
        latency_ms=latencies.summary_ms(), ttft_ms=histogram([ttft[0]] * 98 + [ttft[1]] * 2).summary_ms()
        if ttft else {}, itl_ms=histogram([itl[0]] * 98 + [itl[1]] * 2).summary_ms() if itl else {},
        errors={}, loadgen_cpu_cores=0.1, latency_histogram=latencies, window_unix=window)


def breakdown(batch_sizes: dict[int, int], queue_us: float, infer_us: float,
              metrics: dict[str, float] | None = None) -> ServerBreakdown:
    executions = sum(batch_sizes.values())
    inferences = sum(size * count for size, count in batch_sizes.items())
    return ServerBreakdown(requests=inferences, executions=executions, inferences=inferences,
                           stage_us={"queue": queue_us, "compute_input": 50.0, "compute_infer": infer_us,
                                     "compute_output": 20.0},
                           batch_sizes=batch_sizes, failures=0, metrics_delta=metrics or {})


def engine_metrics(streams: int, steps: int) -> dict[str, float]:
    """A metrics diff as the engine's Prometheus series would give it."""
    name = "ds_triton_generation_batch_occupancy"
    bounds = [1, 2, 4, 8, 16, 32]
    delta = {f"{name}_bucket{{le={b}}}": float(steps if b >= streams else 0) for b in bounds}
    delta[f"{name}_bucket{{le=+Inf}}"] = float(steps)
    delta.update({f"{name}_sum": float(steps * streams), f"{name}_count": float(steps),
                  "ds_triton_generation_time_to_first_token_seconds_sum": 0.012 * streams * 4,
                  "ds_triton_generation_time_to_first_token_seconds_count": float(streams * 4),
                  "ds_triton_generation_tokens_total": float(steps * streams),
                  "ds_triton_generation_forward_passes_total{phase=decode}": float(steps),
                  "ds_triton_generation_forward_passes_total{phase=prefill}": float(steps // 20)})
    return delta


def results() -> BenchResults:
    from ds_triton_perf.bench import _attach_server_side

    out = BenchResults(meta={"date": "2026-11-28 00:00 UTC", "machine": "test machine", "command": "test",
                             "quick": True, "profile_dir": str(PROFILE_DIR), "elapsed_s": 1.0})
    for texts in ("uniform", "mixed"):
        for size, ips in ((1, 40.0), (16, 150.0)):
            # batches × size ÷ seconds = texts/s
            out.ceiling.append((EMBEDDING, CeilingPoint(texts, size, round(ips), float(size), LENGTH_GROUPS)))
            out.ceiling.append((EMBEDDING, CeilingPoint(texts, size, round(0.8 * ips), float(size), NAIVE)))
        for system, scale in (("triton", 1.0), ("pytriton", 0.9), ("rest", 0.5)):
            for level, ips in ((1, 45.0), (16, 140.0)):
                server = breakdown({1: 10, 8: 20}, 400.0, 9000.0) if system != "rest" else None
                out.load_runs.append(LoadRun(EMBEDDING, "closed", system, texts,
                                             load_result("closed", level, ips * scale, 20.0, 40.0), server))
            out.load_runs.append(LoadRun(EMBEDDING, "open", system, texts,
                                         load_result("open", 70.0, 70.0 * scale, 25.0, 45.0, label="50%")))
    out.static_batches.append((GENERATION, StaticBatchResult(16, 16, 800, 1024, 1.0)))
    for streams, window in ((1, (T0 + 2.6, T0 + 3.4)), (16, (T0 + 0.2, T0 + 0.9))):
        run = LoadRun(GENERATION, "lg_streams", "triton", "mixed",
                      load_result("closed", streams, 300.0 * streams ** 0.5, 200.0, 400.0, window,
                                  ttft=(4.0 * streams ** 0.3, 9.0 * streams ** 0.3), itl=(2.0, 5.0)),
                      breakdown({1: 40}, 300.0, 500.0, engine_metrics(streams, 400)))
        out.load_runs.append(run)
    for concurrency, itl in ((1, 1.3), (16, 4.0)):
        out.genai_perf.append(GenaiPerfResult(
            GenaiPerfRun(GENERATION, "u", Path("t"), concurrency), ok=True, output_tokens_per_s=900.0,
            requests_per_s=10.0, metrics={"time_to_first_token": {"p50": 3.0, "p99": 9.0},
                                          "inter_token_latency": {"p50": itl, "p99": 3 * itl},
                                          "request_latency": {"p50": 50.0, "p99": 90.0}}))
    _add_kinds(out)
    _attach_server_side(out, PROFILE_DIR)
    compare(out)
    return out


def overload_bins() -> list[SecondBin]:
    """3 s at 70%, 3 s surge with fast rejections, 4 s after (recovered after 1 s)."""
    bins = []
    for second in range(10):
        item = SecondBin()
        surge = 3 <= second < 6
        slow = surge or second == 6
        item.ok = 70
        item.items_done = 70 if not surge else 95
        for _ in range(70):
            item.latency.record(60_000 if slow else 20_000)
        if surge:
            item.errors = Counter({"OverloadedError": 200})
            item.error_ms["OverloadedError"] = histogram([3.0] * 200)
        bins.append(item)
    return bins


def _add_kinds(out: BenchResults) -> None:
    config = overload.OverloadScenario()
    for model in (EMBEDDING, GENERATION):
        row = overload.analyse(overload_bins(), (3.0, 3.0, 4.0), 100.0, 100.0, config, metric="latency")
        row.update(model=model, scenario="overload", texts="short", loadgen_cpu_cores=0.5, unfinished=0,
                   window_unix=[T0, T0 + 10],
                   bars={"rejected_ms": 50.0, "p99_ratio": 3.0, "goodput": 0.9, "recovery_s": 5.0})
        out.extra.setdefault("overload", []).append(row)
    trace = long_prompt._Trace(
        streams=[[T0 + 0.004 * i for i in range(250)], [T0 + 0.002 + 0.004 * i for i in range(250)]],
        windows=[(T0 + 0.3, T0 + 0.32), (T0 + 0.7, T0 + 0.72)])
    trace.streams[0][80] += 0.015  # a stall during the first long prefill
    row = long_prompt.analyse(trace, long_prompt.LongPromptScenario())
    row.update(model=GENERATION, scenario="long_prompt", streams=2, prompt_tokens=512,
               arrivals_unix=[T0 + 1.0], errors=[], itl_ratio_bar=2.0)
    out.extra["long_prompt"] = [row]
    samples = []
    for index in range(20):
        grow = 50 * MB if index >= 5 else 0
        samples.append(MemorySample(T0 + index, (
            ProcessMemory(1, "tritonserver", 300 * MB, 40, frozenset({"r0"})),
            ProcessMemory(2, "stub text_embedding_0_0", 400 * MB + grow, 10, frozenset({"r0"})),
            ProcessMemory(3, "stub text_generation_0_0", 350 * MB, 10, frozenset({"r0"})))))
    row = soak.summarise(samples, T0, T0 + 4, T0 + 15)
    row.update(model="", scenario="soak", good_failed=0, bad_server_errors=0,
               counts={EMBEDDING: {"good_ok": 90, "good_failed": {}, "bad_refused": 10, "bad_accepted": 0,
                                   "bad_server_error": {}}},
               requests={EMBEDDING: 100}, warmup_requests={EMBEDDING: 10},
               bars={"growth_mb": 100.0, "idle_mb": 100.0})
    out.extra["soak"] = [row]
    rounds = [{"logprobs": 5 * (i % 2), "tokens_per_s": 1000.0 - 150 * (i % 2) + i,
               "itl_p50_ms": 15.0 + i % 2, "itl_p99_ms": 30.0 + 4 * (i % 2), "completed": 90,
               "loadgen_cpu_cores": 0.3 + 0.1 * (i % 2), "errors": {}}
              for i in range(6)]
    out.extra["logprobs"] = [{"model": GENERATION, "scenario": "logprobs", "streams": 16, "top": 5,
                              "max_tokens": 64, "ratio_bar": 0.8, **logprobs.summarise(rounds),
                              "sampler_share_bar_pct": 1.0, "vocab": 30522, "sampler_us": 520.0,
                              "argmax_us": 505.0, "sampler_overhead_us": 15.0, "step_ms": 16.0,
                              "sampler_share_pct": 0.094, "plain_spread_pct": 0.5, "rounds": rounds}]
