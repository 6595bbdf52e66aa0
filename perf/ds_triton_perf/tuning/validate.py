"""The finalists held to the project's latency bars (issue 14), beyond the search's own objective.

* Embedding: p99 at 50% of the candidate's best throughput (open loop) ≤ 2×
  its single-request p50 (one request at a time), and, when the in-process
  ceiling is measured, its best throughput ≥ 0.95× the ceiling.
* Generation: time-to-first-token p99 at its best level ≤ 3× the
  single-stream TTFT p50.

A tune run reports these for its top candidates; with ``--require-bars`` the
recommendation is the best candidate that meets them, and when none does the
run says so and shows the frontier.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ds_triton_perf.tuning.evaluate import LiveEvaluator
from ds_triton_perf.tuning.live import DeployError
from ds_triton_perf.tuning.measurement import Fidelity, Measurement
from ds_triton_perf.tuning.settings import apply
from ds_triton_perf.tuning.workload import Workload

EMBEDDING_LATENCY_BAR = 2.0
GENERATION_TTFT_BAR = 3.0
CEILING_BAR = 0.95
HALF_LOAD = 0.5


@dataclass
class Validation:
    """One finalist against the bars (times in ms).

    Attributes:
        single_ms: Single-request p50 (embedding) or single-stream TTFT p50 (generation).
        loaded_ms: p99 at half the best throughput (embedding) or TTFT p99 at the best level.
        ratio: ``loaded_ms / single_ms``; ``bar`` is its limit.
        ceiling_ratio: Best throughput ÷ the in-process ceiling (embedding, when measured).
        failed: Why it could not be validated.
    """

    candidate: str
    single_ms: float | None = None
    loaded_ms: float | None = None
    ratio: float | None = None
    bar: float = EMBEDDING_LATENCY_BAR
    ceiling_ratio: float | None = None
    failed: str | None = None

    @property
    def meets(self) -> bool:
        if self.ratio is None or self.ratio > self.bar:
            return False
        return self.ceiling_ratio is None or self.ceiling_ratio >= CEILING_BAR

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "meets": self.meets}


def validate(evaluator: LiveEvaluator, finalist: Measurement, fidelity: Fidelity, workload: Workload,
             ceiling: float | None) -> Validation:
    """Deploy ``finalist`` again and measure what its bars need."""
    best = finalist.best_level
    task = evaluator.base.task
    result = Validation(finalist.candidate, bar=GENERATION_TTFT_BAR if task == "generation"
                        else EMBEDDING_LATENCY_BAR)
    if best is None:
        result.failed = "no level met the constraints"
        return result
    spec = apply(evaluator.base, finalist.settings)
    try:
        if not evaluator.live.serves(spec):
            evaluator.live.deploy(spec)
    except DeployError as exc:
        result.failed = str(exc)
        return result
    evaluator.log.detail(f"validating {finalist.candidate}")
    alone = evaluator.level(1, fidelity, mode="closed")
    if task == "generation":
        result.single_ms = alone.ttft_ms.get("p50")
        result.loaded_ms = best.ttft_ms.get("p99")
    else:
        rate = HALF_LOAD * best.throughput / _texts_per_request(workload)
        loaded = evaluator.level(round(rate, 2), fidelity, mode="open", figure="p99")
        result.single_ms = alone.latency_ms.get("p50")
        result.loaded_ms = loaded.latency_ms.get("p99")
        if ceiling:
            result.ceiling_ratio = best.throughput / ceiling
    if result.single_ms and result.loaded_ms is not None:
        result.ratio = result.loaded_ms / result.single_ms
    return result


def measure_ceiling(model_dir: Path, workload: Workload, batch_sizes: Sequence[int] = (1, 8, 16, 32, 64),
                    seconds: float = 3.0) -> tuple[float, int]:
    """The in-process ceiling (``ds_triton_perf.peers.ceiling``) on the workload's texts: (items/s, batch)."""
    from ds_triton_perf.peers.ceiling import measure_ceiling as measure_point
    from ds_triton_perf.peers.model import load_encoder

    texts = [text for request in workload.texts for text in request]
    encoder = load_encoder(model_dir)
    points = [measure_point(encoder, texts, "workload", size, seconds) for size in batch_sizes]
    best = max(points, key=lambda p: p.items_per_s)
    return best.items_per_s, best.batch_size


def load_validations(path: Path) -> dict[str, Validation]:
    """Validations a resumed run already has (``validation.jsonl``)."""
    if not path.is_file():
        return {}
    found = {}
    for line in path.read_text().splitlines():
        if line.strip():
            data = json.loads(line)
            data.pop("meets", None)
            found[data["candidate"]] = Validation(**data)
    return found


def save_validation(path: Path, validation: Validation) -> None:
    with path.open("a") as handle:
        handle.write(json.dumps(validation.to_dict()) + "\n")


def _texts_per_request(workload: Workload) -> float:
    if not workload.texts:
        return 1.0
    return sum(len(t) for t in workload.texts) / len(workload.texts)
