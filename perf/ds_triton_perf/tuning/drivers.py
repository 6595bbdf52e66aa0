"""Load for one level, window by window: the project's load generator or perf_analyzer.

Both drive the live server at one load (closed-loop concurrency or open-loop
rate) and measure consecutive windows until the fidelity says the level is
known well enough; the windows' figures give its confidence interval. The
load generator's latency histograms are merged over the windows, so the
level's p99 is the p99 of all its requests; perf_analyzer reports percentiles
per run, so there the level's percentiles are the mean of its windows'.
Triton's statistics (and the generation engine's metrics) are diffed around
the whole level for the queue vs compute split and the achieved batch size.
"""

from __future__ import annotations

import asyncio
import itertools
import math
from collections import Counter
from collections.abc import Iterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ds_triton_perf.engine_metrics import engine_run
from ds_triton_perf.histogram import Histogram
from ds_triton_perf.loadgen import LoadResult, LoadSpec, run_load
from ds_triton_perf.outcome import RequestFn
from ds_triton_perf.perf_analyzer import PaResult, PaRun, run_perf_analyzer
from ds_triton_perf.server_side import StatsProbe
from ds_triton_perf.systems import ServerUrls
from ds_triton_perf.targets import Endpoint
from ds_triton_perf.targets.generation import open_generation_target
from ds_triton_perf.targets.triton import triton_embedding
from ds_triton_perf.triton_stats import ServerBreakdown
from ds_triton_perf.tuning.measurement import Fidelity, Level
from ds_triton_perf.tuning.workload import Workload

Driver = Literal["loadgen", "perf_analyzer"]
DRIVERS: tuple[Driver, ...] = ("loadgen", "perf_analyzer")
PERCENTILES = ("p50", "p90", "p99")
# The engine publishes its metrics once a second: wait that long before the "after" snapshot.
ENGINE_METRICS_SETTLE_S = 1.2


@dataclass(frozen=True)
class LevelLoad:
    """How to drive one model: where, with which requests, and how long to warm up."""

    model: str
    task: Literal["embedding", "generation"]
    urls: ServerUrls
    workload: Workload
    driver: Driver = "loadgen"
    work_dir: Path = Path(".")

    @property
    def warmup_s(self) -> float:
        """Before a level's first window: long enough for every stream to start and settle."""
        return 2.0 if self.task == "generation" else 1.0

    @property
    def settle_s(self) -> float:
        """Before each later window: closed-loop workers restart, so let them spread out again."""
        return 1.0 if self.task == "generation" else 0.2

    @property
    def request_timeout_s(self) -> float:
        return 120.0 if self.task == "generation" else 30.0


def measure_level(load: LevelLoad, mode: Literal["closed", "open"], value: float, fidelity: Fidelity,
                  figure: str, notes: list[str]) -> Level:
    """Measure windows at one load until ``fidelity`` is satisfied; ``figure`` names the window figure."""
    probe = StatsProbe(notes, settle_s=ENGINE_METRICS_SETTLE_S if load.task == "generation" else 0.0)
    before = probe.before(load.urls, load.model)
    if load.driver == "perf_analyzer":
        level = _perf_analyzer_level(load, mode, value, fidelity, figure)
    else:
        level = asyncio.run(_loadgen_level(load, mode, value, fidelity, figure))
    breakdown = probe.after(before, load.urls, load.model)
    if breakdown is not None:
        level.server = server_split(breakdown)
    return level


def server_split(breakdown: ServerBreakdown) -> dict[str, float]:
    """Queue vs compute per request (ms) and the achieved batch size, from Triton's side."""
    stages = breakdown.stage_us
    split = {"queue_ms": stages.get("queue", 0.0) / 1000.0,
             "compute_ms": sum(stages.get(s, 0.0) for s in ("compute_input", "compute_infer",
                                                             "compute_output")) / 1000.0,
             "batch": breakdown.achieved_batch_size}
    engine = engine_run(breakdown.metrics_delta)
    if engine is not None:  # decoupled: Triton sees one request per execution; the engine batches
        split["batch"] = engine.occupancy_mean or 0.0
        if engine.ttft_ms is not None:
            split["engine_ttft_ms"] = engine.ttft_ms
    return split


# -- the project's load generator ----------------------------------------------
async def _loadgen_level(load: LevelLoad, mode: Literal["closed", "open"], value: float,
                         fidelity: Fidelity, figure: str) -> Level:
    latency, ttft, itl = Histogram(), Histogram(), Histogram()
    figures: list[float] = []
    throughputs: list[float] = []
    tokens: list[float] = []
    errors: Counter[str] = Counter()
    requests = 0
    async with _target(load) as request:
        while not fidelity.done(figures):
            spec = LoadSpec(mode=mode, concurrency=int(value) if mode == "closed" else 1,
                            rate=value if mode == "open" else 0.0, duration_s=fidelity.window_s,
                            warmup_s=load.warmup_s if not figures else load.settle_s,
                            request_timeout_s=load.request_timeout_s, drain_timeout_s=load.request_timeout_s,
                            seed=len(figures))
            result = await run_load(request, spec, progress=False)
            latency.merge(result.latency_histogram)
            ttft.merge(result.ttft_histogram)
            itl.merge(result.itl_histogram)
            errors.update(result.errors)
            requests += result.completed
            throughputs.append(result.items_per_s)
            tokens.append(result.tokens_per_s)
            figures.append(_figure(result, figure))
    return Level(mode=mode, load=value, windows=figures, throughput=_mean(throughputs),
                 tokens_per_s=_mean(tokens), latency_ms=_percentiles(latency), ttft_ms=_percentiles(ttft),
                 itl_ms=_percentiles(itl), requests=requests, errors=dict(errors))


def _target(load: LevelLoad) -> AbstractAsyncContextManager[RequestFn]:
    if load.task == "generation":
        return open_generation_target(load.urls.http, load.model, load.workload.prompts, "http")
    endpoint = Endpoint("triton", "triton", load.urls.grpc, load.model, "grpc")
    return triton_embedding(endpoint, _cycle_lists(load.workload))


def _cycle_lists(workload: Workload) -> Iterator[list[str]]:
    return itertools.cycle([list(texts) for texts in workload.texts])


def _figure(result: LoadResult, figure: str) -> float:
    if figure == "p99":
        return result.latency_ms.get("p99", math.nan)
    return result.tokens_per_s if figure == "tokens" else result.items_per_s


def _percentiles(histogram: Histogram) -> dict[str, float]:
    if not histogram.total:
        return {}
    summary = histogram.summary_ms()
    return {k: summary[k] for k in PERCENTILES}


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


# -- perf_analyzer -------------------------------------------------------------
def _perf_analyzer_level(load: LevelLoad, mode: Literal["closed", "open"], value: float,
                         fidelity: Fidelity, figure: str) -> Level:
    input_data, batch = perf_analyzer_input(load)
    figures: list[float] = []
    results: list[PaResult] = []
    while not fidelity.done(figures):
        # perf_analyzer takes three measurement intervals per run (its stability window).
        run = PaRun(model=load.model, url=load.urls.grpc, protocol="grpc",
                    mode="concurrency" if mode == "closed" else "request_rate", level=value,
                    input_data=input_data, batch_size=batch,
                    measurement_ms=max(200, int(fidelity.window_s * 1000 / 3)))
        result = run_perf_analyzer(run, load.work_dir / "perf_analyzer")
        results.append(result)
        if not result.ok:
            return Level(mode=mode, load=value, windows=figures, throughput=0.0,
                         errors={"perf_analyzer failed": 1})
        items = result.throughput * batch
        figures.append(result.latency_ms.get("p99", math.nan) if figure == "p99" else items)
    latency = {k: _mean([r.latency_ms[k] for r in results if k in r.latency_ms]) for k in PERCENTILES}
    throughput = _mean([r.throughput * batch for r in results])
    seconds = len(results) * fidelity.window_s
    return Level(mode=mode, load=value, windows=figures, throughput=throughput, latency_ms=latency,
                 requests=round(throughput / batch * seconds))


def perf_analyzer_input(load: LevelLoad) -> tuple[Path, int]:
    """perf_analyzer's ``--input-data`` file and ``-b`` (every request must hold as many texts)."""
    from ds_triton_perf.texts import write_input_data

    if load.task != "embedding":
        raise ValueError("perf_analyzer drives embedding models here; generation uses the load generator "
                         "(it measures time to first token and inter-token latency)")
    sizes = {len(texts) for texts in load.workload.texts}
    if len(sizes) != 1:
        raise ValueError(f"perf_analyzer sends a fixed batch per request; the workload mixes {sorted(sizes)}")
    texts = [text for request in load.workload.texts for text in request]
    return write_input_data(texts, load.work_dir / "perf_analyzer" / "input.json"), sizes.pop()
