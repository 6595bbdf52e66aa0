"""The embedding suite of one model: ceiling, load-generator sweeps per system, perf_analyzer.

Order matters on a small machine: every step runs alone, so no two systems
ever share the CPU. The ceiling runs first (in this process), then each
system's load sweeps (closed loop before open loop, because open-loop rates
may be a share of the best closed-loop throughput), then perf_analyzer
against this project's server.
"""

from __future__ import annotations

import asyncio
import gc
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ds_triton_perf.guard import Guard
from ds_triton_perf.loadgen import LoadResult, LoadSpec, run_load
from ds_triton_perf.perf_analyzer import PaRun, run_perf_analyzer
from ds_triton_perf.results import BenchResults, LoadRun, PaPoint
from ds_triton_perf.scenarios import (
    LoadgenScenario,
    ModelScenarios,
    PerfAnalyzerScenario,
    ScenarioError,
    resolve_rate,
)
from ds_triton_perf.server_side import StatsProbe
from ds_triton_perf.steps import StepLog
from ds_triton_perf.systems import ServerUrls, open_system
from ds_triton_perf.targets import Endpoint, open_embedding_target
from ds_triton_perf.texts import text_mix, write_input_data

if TYPE_CHECKING:
    from ds_triton.embedding.encoder import TextEncoder


@dataclass
class EmbeddingBench:
    """Runs every scenario of one embedding model and appends to ``results``."""

    scenarios: ModelScenarios
    model_dir: Path
    server: ServerUrls
    results: BenchResults
    out_dir: Path
    log: StepLog
    quick: bool = False
    systems: tuple[str, ...] = ("triton", "pytriton", "rest")
    progress: bool = True
    guard: Guard | None = None

    def __post_init__(self) -> None:
        self._probe = StatsProbe(self.results.notes)
        self._guard = self.guard or Guard(self.results.notes, self.log)

    def run(self) -> None:
        """Every scenario; a point that fails is a note and the rest still run."""
        model = self.scenarios.model
        self.run_ceiling()
        for system in self.systems:
            wanted = [s for s in self._loadgen_order() if system in s.systems]
            if wanted:
                self._guard.run(f"{model} {system}", self.run_system, system, wanted)
        for scenario in self.scenarios.perf_analyzer:
            self.run_perf_analyzer(scenario)

    # -- in-process ceiling -------------------------------------------------
    def run_ceiling(self) -> None:
        ceiling = self.scenarios.ceiling
        if ceiling is None:
            return
        from ds_triton_perf.peers.ceiling import LENGTH_GROUPS, NAIVE, measure_ceiling
        from ds_triton_perf.peers.model import load_encoder

        model = self.scenarios.model
        sizes = ceiling.quick_batch_sizes if self.quick else ceiling.batch_sizes
        duration = ceiling.quick_duration_s if self.quick else ceiling.duration_s

        def measure(encoder: TextEncoder, mix: str, size: int, padding: str) -> None:
            self.log.step(f"{model}: ceiling {mix} batch {size}, {padding}")
            point = measure_ceiling(encoder, self._texts(mix), mix, size, duration, padding=padding)
            self.results.ceiling.append((model, point))
            self.log.detail(f"{point.items_per_s:.1f} texts/s, {point.batch_latency_ms:.1f} ms/batch")

        def padding_mode(padding: str, bucketing: bool | None) -> None:
            self.log.step(f"{model}: in-process ceiling, {padding} (loading the model)")
            encoder = load_encoder(self.model_dir, length_bucketing=bucketing)
            for mix in ceiling.texts:
                for size in sizes:
                    self._guard.run(f"{model} ceiling {mix} batch {size} ({padding})",
                                    measure, encoder, mix, size, padding)

        for padding, bucketing in ((LENGTH_GROUPS, None), (NAIVE, False)):
            self._guard.run(f"{model} ceiling ({padding})", padding_mode, padding, bucketing)
        gc.collect()

    # -- load generator -----------------------------------------------------
    def run_system(self, system: str, scenarios: list[LoadgenScenario]) -> None:
        self.log.step(f"{self.scenarios.model}: starting {system}")
        protocol = scenarios[0].protocol
        with open_system(system, self.scenarios.model, self.model_dir, self.server, protocol,
                         self.out_dir / "peers") as (endpoint, urls):
            for scenario in scenarios:
                sweep = scenario.quick_sweep if self.quick and scenario.quick_sweep else scenario.sweep
                for requested in sweep:
                    self._guard.run(f"{self.scenarios.model} {scenario.name} {system} {requested}",
                                    self._load_point, scenario, endpoint, urls, requested)

    def _load_point(self, scenario: LoadgenScenario, endpoint: Endpoint, urls: ServerUrls | None,
                    requested: float | str) -> None:
        model = self.scenarios.model
        best = self.results.best_rps(model, endpoint.system, scenario.texts)
        try:
            level = resolve_rate(requested, best) if scenario.mode == "open" else float(requested)
        except ScenarioError as exc:  # its closed loop completed nothing: one skipped point, not a crash
            self.results.notes.append(f"{model} {scenario.name} {endpoint.system} {requested}: "
                                      f"skipped, {exc}")
            self.log.detail(f"skipped: {exc}")
            return
        spec = LoadSpec(
            mode=scenario.mode, concurrency=int(level) if scenario.mode == "closed" else 1,
            rate=level if scenario.mode == "open" else 0.0, distribution=scenario.distribution,
            duration_s=scenario.quick_duration_s if self.quick else scenario.duration_s,
            warmup_s=min(scenario.warmup_s, 0.5) if self.quick else scenario.warmup_s,
        )
        label = f"{scenario.name} {endpoint.system} " + (
            f"c={spec.concurrency}" if spec.mode == "closed" else f"{spec.rate:.1f}/s ({requested})")
        self.log.step(f"{model}: loadgen {label}")
        before = self._probe.before(urls, endpoint.model)
        result = asyncio.run(self._drive(endpoint, scenario.texts, spec, label))
        server = self._probe.after(before, urls, endpoint.model)
        result.label = str(requested)
        self.results.load_runs.append(LoadRun(model, scenario.name, endpoint.system, scenario.texts,
                                              result, server))
        self.log.detail(f"{result.throughput_rps:.1f} req/s, p50 {result.latency_ms['p50']:.1f} ms, "
                        f"p99 {result.latency_ms['p99']:.1f} ms, {result.error_count} errors"
                        + (f", batch {server.achieved_batch_size:.1f}" if server else ""))

    async def _drive(self, endpoint: Endpoint, mix: str, spec: LoadSpec, label: str) -> LoadResult:
        async with open_embedding_target(endpoint, self._texts(mix)) as request:
            return await run_load(request, spec, label=label, progress=self.progress)

    # -- perf_analyzer ------------------------------------------------------
    def run_perf_analyzer(self, scenario: PerfAnalyzerScenario) -> None:
        model = self.scenarios.model
        input_data = write_input_data(self._texts(scenario.texts), self.out_dir / "inputs" /
                                      f"{model}_{scenario.texts}.json")
        sweep = scenario.quick_sweep if self.quick and scenario.quick_sweep else scenario.sweep
        batch_sizes = scenario.batch_sizes[:2] if self.quick else scenario.batch_sizes
        best = self.results.best_rps(model, "triton", scenario.texts)
        for requested in sweep:
            try:
                level = resolve_rate(requested, best) if scenario.mode == "request_rate" else float(requested)
            except ScenarioError as exc:
                self.results.notes.append(f"{model} {scenario.name} {requested}: skipped, {exc}")
                continue
            for batch_size in batch_sizes:
                run = PaRun(
                    model=model,
                    url=self.server.grpc if scenario.protocol == "grpc" else self.server.http,
                    protocol=scenario.protocol, mode=scenario.mode, level=round(level, 2),
                    input_data=input_data, batch_size=batch_size, distribution=scenario.distribution,
                    streaming=scenario.streaming,
                    measurement_ms=scenario.quick_measurement_ms if self.quick else scenario.measurement_ms,
                )
                self._guard.run(f"{model} perf_analyzer {scenario.name} {scenario.mode}={run.level:g} "
                                f"batch {batch_size}", self._perf_analyzer_point, scenario, run)

    def _perf_analyzer_point(self, scenario: PerfAnalyzerScenario, run: PaRun) -> None:
        model = self.scenarios.model
        self.log.step(f"{model}: perf_analyzer {scenario.name} {scenario.mode}={run.level:g} "
                      f"batch {run.batch_size}")
        before = self._probe.before(self.server, model)
        result = run_perf_analyzer(run, self.out_dir / "perf_analyzer" / scenario.name)
        point = PaPoint(model, scenario.name, scenario.texts, result,
                        self._probe.after(before, self.server, model))
        self.results.perf_analyzer.append(point)
        self.log.detail(f"{result.throughput:.1f} infer/s, p99 "
                        f"{result.latency_ms.get('p99', float('nan')):.1f} ms"
                        if result.ok else f"FAILED: {result.message[-200:]}")

    # -- helpers ------------------------------------------------------------
    def _texts(self, mix: str) -> list[str]:
        return text_mix(self.scenarios.text_weights(mix), count=256, seed=0)

    def _loadgen_order(self) -> list[LoadgenScenario]:
        # Closed loops first: relative open-loop rates need their best throughput.
        return sorted(self.scenarios.loadgen, key=lambda s: s.mode != "closed")
