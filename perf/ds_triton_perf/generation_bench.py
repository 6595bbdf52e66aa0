"""The generation suite of one model: static-batch baseline, streaming load, perf_analyzer streams.

The same request list (prompt i with ``max_tokens[i % k]``, EOS ignored) feeds
the in-process static batches, the load generator's streams and
perf_analyzer's ``--streaming`` runs, so tokens/s are comparable.
"""

from __future__ import annotations

import asyncio
import gc
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ds_triton_perf.genai_perf import GenaiPerfRun, run_genai_perf
from ds_triton_perf.guard import Guard
from ds_triton_perf.loadgen import LoadResult, LoadSpec, run_load
from ds_triton_perf.perf_analyzer import PaRun, run_perf_analyzer
from ds_triton_perf.results import BenchResults, LoadRun, PaPoint
from ds_triton_perf.scenarios import GenaiPerfScenario, LoadgenScenario, ModelScenarios, PerfAnalyzerScenario
from ds_triton_perf.server_side import StatsProbe
from ds_triton_perf.steps import StepLog
from ds_triton_perf.systems import ServerUrls
from ds_triton_perf.targets.generation import open_generation_target

METRICS_SETTLE_S = 1.2


@dataclass
class GenerationBench:
    """Runs every scenario of one generation model and appends to ``results``."""

    scenarios: ModelScenarios
    model_dir: Path
    server: ServerUrls
    results: BenchResults
    out_dir: Path
    log: StepLog
    quick: bool = False
    progress: bool = True
    guard: Guard | None = None

    def __post_init__(self) -> None:
        self._guard = self.guard or Guard(self.results.notes, self.log)
        # The engine publishes its metrics in the background: wait a beat before the "after" snapshot.
        self._probe = StatsProbe(self.results.notes, settle_s=METRICS_SETTLE_S)
        self._stream_protocol: Literal["http", "grpc"] = "http"
        self.requests = self.scenarios.generation_requests(self.quick)

    def run(self) -> None:
        """Every scenario; a point that fails is a note and the rest still run."""
        model = self.scenarios.model
        if self.scenarios.generation.static_batch_size > 0:
            self._guard.run(f"{model} static batches", self.run_static_batches)
        for scenario in self.scenarios.loadgen:
            sweep = scenario.quick_sweep if self.quick and scenario.quick_sweep else scenario.sweep
            for level in sweep:
                self._guard.run(f"{model} {scenario.name} c={level}", self._stream_point, scenario,
                                int(float(level)))
        for pa in self.scenarios.perf_analyzer:
            self.run_perf_analyzer(pa)
        for genai in self.scenarios.genai_perf:
            self.run_genai_perf(genai)

    def run_genai_perf(self, scenario: GenaiPerfScenario) -> None:
        from ds_triton.spec import ModelSpec

        version_dir = self.model_dir / "1"
        tokenizer = ModelSpec.load(version_dir).resolve_checkpoint(version_dir)
        sweep = scenario.quick_sweep if self.quick and scenario.quick_sweep else scenario.sweep
        for concurrency in sweep:
            self._guard.run(f"{self.scenarios.model} genai-perf {scenario.name} concurrency={concurrency}",
                            self._genai_perf_point, scenario, tokenizer, concurrency)

    def _genai_perf_point(self, scenario: GenaiPerfScenario, tokenizer: Path, concurrency: int) -> None:
        run = GenaiPerfRun(
            model=self.scenarios.model, grpc_url=self.server.grpc, tokenizer=tokenizer,
            concurrency=concurrency, input_tokens_mean=scenario.input_tokens_mean,
            output_tokens_mean=scenario.output_tokens_mean, num_prompts=scenario.num_prompts,
            measurement_ms=scenario.quick_measurement_ms if self.quick else scenario.measurement_ms,
        )
        self.log.step(f"{self.scenarios.model}: genai-perf {scenario.name} concurrency={concurrency}")
        result = run_genai_perf(run, self.out_dir / "genai_perf")
        self.results.genai_perf.append(result)
        if result.ok:
            ttft = result.metrics.get("time_to_first_token", {}).get("p50", float("nan"))
            self.log.detail(f"{result.output_tokens_per_s:.1f} output tokens/s, TTFT p50 {ttft:.1f} ms")
        else:
            self.log.detail(f"FAILED: {result.message[-200:]}")
            self.results.notes.append(f"genai-perf {scenario.name} c={concurrency} failed: "
                                      f"{result.message.strip().splitlines()[-1:]}")

    def run_static_batches(self) -> None:
        from ds_triton_perf.peers.static_batches import measure_static_batches

        size = self.scenarios.generation.static_batch_size
        self.log.step(f"{self.scenarios.model}: in-process static batches of {size}")
        result = measure_static_batches(self.model_dir, [p for p, _ in self.requests],
                                        [t for _, t in self.requests], batch_size=size)
        self.results.static_batches.append((self.scenarios.model, result))
        self.log.detail(f"{result.tokens_per_s:.1f} useful tokens/s "
                        f"({result.useful_tokens} of {result.generated_tokens} generated)")
        gc.collect()

    def _stream_point(self, scenario: LoadgenScenario, concurrency: int) -> None:
        model = self.scenarios.model
        spec = LoadSpec(mode="closed", concurrency=concurrency,
                        duration_s=scenario.quick_duration_s if self.quick else scenario.duration_s,
                        warmup_s=min(scenario.warmup_s, 0.5) if self.quick else scenario.warmup_s,
                        request_timeout_s=120.0)
        self.log.step(f"{model}: loadgen {scenario.name} streams c={concurrency}")
        before = self._probe.before(self.server, model)
        self._stream_protocol = scenario.protocol
        result = asyncio.run(self._drive(spec, f"{scenario.name} c={concurrency}"))
        result.label = str(concurrency)
        server = self._probe.after(before, self.server, model)
        self.results.load_runs.append(LoadRun(model, scenario.name, "triton", scenario.texts, result,
                                              server))
        ttft = result.ttft_ms.get("p50", float("nan"))
        self.log.detail(f"{result.tokens_per_s:.1f} tokens/s, TTFT p50 {ttft:.1f} ms, "
                        f"{result.error_count} errors")

    async def _drive(self, spec: LoadSpec, label: str) -> LoadResult:
        protocol = self._stream_protocol
        url = self.server.grpc if protocol == "grpc" else self.server.http
        async with open_generation_target(url, self.scenarios.model, self.requests, protocol) as request:
            return await run_load(request, spec, label=label, progress=self.progress)

    def run_perf_analyzer(self, scenario: PerfAnalyzerScenario) -> None:
        model = self.scenarios.model
        data = {"data": [{
            "text_input": [prompt], "stream": [True], "exclude_input_in_output": [True],
            "sampling_parameters": [json.dumps({"temperature": 0, "max_tokens": tokens,
                                                "ignore_eos": True})],
        } for prompt, tokens in self.requests]}
        input_data = self.out_dir / "inputs" / f"{model}.json"
        input_data.parent.mkdir(parents=True, exist_ok=True)
        input_data.write_text(json.dumps(data))
        sweep = scenario.quick_sweep if self.quick and scenario.quick_sweep else scenario.sweep
        url = self.server.grpc if scenario.protocol == "grpc" else self.server.http
        window = scenario.quick_measurement_ms if self.quick else scenario.measurement_ms
        for level in sweep:
            run = PaRun(model=model, url=url, protocol=scenario.protocol, mode=scenario.mode,
                        level=float(level), input_data=input_data, streaming=scenario.streaming,
                        measurement_ms=window)
            self._guard.run(f"{model} perf_analyzer {scenario.name} {scenario.mode}={level}",
                            self._perf_analyzer_point, scenario, run)

    def _perf_analyzer_point(self, scenario: PerfAnalyzerScenario, run: PaRun) -> None:
        model, level = self.scenarios.model, f"{run.level:g}"
        self.log.step(f"{model}: perf_analyzer {scenario.name} {scenario.mode}={level}"
                      + (" (streaming)" if scenario.streaming else ""))
        before = self._probe.before(self.server, model)
        result = run_perf_analyzer(run, self.out_dir / "perf_analyzer" / scenario.name)
        self.results.perf_analyzer.append(PaPoint(model, scenario.name, scenario.texts, result,
                                                  self._probe.after(before, self.server, model)))
        self.log.detail(f"{result.throughput:.1f} responses/s" if result.ok
                        else f"FAILED: {result.message[-200:]}")
