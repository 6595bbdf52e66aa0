"""The live measurement function: deploy a candidate on the server, climb its load ladder.

This is the ``Evaluate`` a search calls (``ds_triton_perf.tuning.search``);
tests of the search logic replace it with a fake.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

from ds_triton.spec import ModelSpec
from ds_triton_perf.steps import StepLog
from ds_triton_perf.tuning.drivers import LevelLoad, measure_level
from ds_triton_perf.tuning.ladder import climb, concurrency_ladder
from ds_triton_perf.tuning.live import DeployError, LiveModel
from ds_triton_perf.tuning.measurement import Fidelity, Level, Measurement
from ds_triton_perf.tuning.objective import Objective
from ds_triton_perf.tuning.settings import apply
from ds_triton_perf.tuning.space import Candidate

MB = 1024 * 1024


@dataclass
class LiveEvaluator:
    """Measures candidates on ``live`` (see the module docstring).

    Attributes:
        max_concurrency: The top of the closed-loop ladder (also capped by what the
            candidate can hold at once: instances × batch size or sequences).
    """

    live: LiveModel
    base: ModelSpec
    load: LevelLoad
    objective: Objective
    log: StepLog
    max_concurrency: int = 64
    notes: list[str] = field(default_factory=list)

    def __call__(self, candidate: Candidate, fidelity: Fidelity, hint: float | None) -> Measurement:
        started = time.monotonic()
        self.log.step(f"{fidelity.name}: {candidate.key}")
        spec = apply(self.base, candidate)
        measurement = Measurement(candidate.key, candidate.as_dict(), fidelity.name)
        try:
            measurement.reload_s = self.live.deploy(spec)
        except DeployError as exc:
            measurement.failed = str(exc)
            measurement.seconds = time.monotonic() - started
            return measurement
        self.log.detail(f"loaded in {measurement.reload_s:.1f}s")
        measurement.levels = climb(lambda value: self.level(value, fidelity), self.objective,
                                   concurrency_ladder(self.highest(spec)), hint)
        best = self.objective.best(measurement.levels)
        if best is not None:
            measurement.score, measurement.best = best
        else:
            measurement.fallback = self.objective.fallback(measurement.levels)
        last = measurement.levels[-1]
        measurement.violation = self.objective.violation(last)
        measurement.memory_mb = self.live.instances_rss() / MB
        measurement.seconds = time.monotonic() - started
        return measurement

    def level(self, value: float, fidelity: Fidelity, mode: Literal["closed", "open"] | None = None,
              figure: str | None = None) -> Level:
        """Measure one level of the model as it is deployed now, and log it."""
        mode = mode or ("open" if self.objective.open_loop else "closed")
        level = measure_level(self.load, mode, value, fidelity, figure or self.objective.window_figure(),
                              self.notes)
        self.log.detail(describe_level(level, self.load.task))
        return level

    def highest(self, spec: ModelSpec) -> int:
        """More concurrent requests than the instances hold at once only queue (or are refused)."""
        instances = spec.deployment.instances_per_device
        held = (spec.generation_options.max_concurrent_sequences if spec.task == "generation"
                else spec.batching.max_batch_size)
        return max(1, min(self.max_concurrency, instances * held))


def describe_level(level: Level, task: str) -> str:
    """One progress line: load, throughput ± noise, latency, server split, errors."""
    noise = f"±{level.noise:.0%}" if level.noise != float("inf") else "±?"
    if task == "generation":
        main = (f"{level.tokens_per_s:.0f} tokens/s, "
                f"TTFT p99 {level.ttft_ms.get('p99', float('nan')):.0f} ms, "
                f"ITL p99 {level.itl_ms.get('p99', float('nan')):.1f} ms")
    else:
        main = (f"{level.throughput:.1f} items/s, p50 {level.latency_ms.get('p50', float('nan')):.1f} ms, "
                f"p99 {level.latency_ms.get('p99', float('nan')):.1f} ms")
    server = level.server
    split = (f", queue {server['queue_ms']:.1f} / compute {server['compute_ms']:.1f} ms, "
             f"batch {server['batch']:.1f}") if server else ""
    errors = f", {level.error_count} errors" if level.error_count else ""
    return f"{level.label():>8}: {main} ({noise}, {len(level.windows)} windows){split}{errors}"
