"""Everything one bench run measured, and how it is written to disk (JSON + CSV)."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ds_triton_perf.engine_metrics import EngineRun
from ds_triton_perf.genai_perf import GenaiPerfResult
from ds_triton_perf.loadgen import LoadResult
from ds_triton_perf.peers.ceiling import CeilingPoint
from ds_triton_perf.peers.static_batches import StaticBatchResult
from ds_triton_perf.perf_analyzer import PaResult
from ds_triton_perf.timeline import StepStats
from ds_triton_perf.triton_stats import ServerBreakdown


@dataclass
class LoadRun:
    """A load-generator run against one system, with the server's side when it is Triton.

    Attributes:
        server: Triton's statistics and the model's metrics, diffed over the run.
        engine: A generation model's engine metrics over the run (from ``server``).
        steps: The server's step timeline inside the run's window, when it writes one.
    """

    model: str
    scenario: str
    system: str
    texts: str
    result: LoadResult
    server: ServerBreakdown | None = None
    engine: EngineRun | None = None
    steps: StepStats | None = None

    def to_row(self) -> dict[str, Any]:
        row = {"model": self.model, "scenario": self.scenario, "system": self.system,
               "texts": self.texts, **self.result.to_row()}
        if self.server:
            row["achieved_batch_size"] = round(self.server.achieved_batch_size, 3)
            row.update({f"server_{k}_us": round(v, 1) for k, v in self.server.stage_us.items()})
        if self.engine:
            row.update({"engine_occupancy_mean": self.engine.to_dict()["occupancy_mean"],
                        "engine_ttft_ms": self.engine.to_dict()["ttft_ms"],
                        "engine_tokens_per_step": self.engine.to_dict()["tokens_per_step"]})
        if self.steps:
            row.update({"decode_step_ms": self.steps.to_dict()["decode_step_ms"],
                        "decode_gap_share": self.steps.to_dict()["decode_gap_share"],
                        "prefill_ms": self.steps.to_dict()["prefill_ms"]})
        return row


@dataclass
class PaPoint:
    """A perf_analyzer point with the server-side breakdown around it."""

    model: str
    scenario: str
    texts: str
    result: PaResult
    server: ServerBreakdown | None = None

    def to_row(self) -> dict[str, Any]:
        row = {"model": self.model, "texts": self.texts, **self.result.to_row(self.scenario)}
        if self.server:
            row["achieved_batch_size"] = round(self.server.achieved_batch_size, 3)
        return row


@dataclass
class BenchResults:
    """The whole run: metadata, ceiling, perf_analyzer, load runs, comparisons and notes."""

    meta: dict[str, Any]
    ceiling: list[tuple[str, CeilingPoint]] = field(default_factory=list)
    static_batches: list[tuple[str, StaticBatchResult]] = field(default_factory=list)
    perf_analyzer: list[PaPoint] = field(default_factory=list)
    load_runs: list[LoadRun] = field(default_factory=list)
    genai_perf: list[GenaiPerfResult] = field(default_factory=list)
    comparisons: list[dict[str, Any]] = field(default_factory=list)
    targets: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    extra: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def best_rps(self, model: str, system: str, texts: str) -> float | None:
        """Highest closed-loop requests/s measured so far for ``system`` on ``texts``."""
        rates = [r.result.throughput_rps for r in self.load_runs
                 if (r.model, r.system, r.texts, r.result.spec.mode) == (model, system, texts, "closed")]
        return max(rates) if rates else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "meta": self.meta,
            "ceiling": [{"model": m, **p.to_row()} for m, p in self.ceiling],
            "static_batches": [{"model": m, **b.to_row()} for m, b in self.static_batches],
            "perf_analyzer": [p.to_row() | {"server": p.server.to_dict() if p.server else None}
                              for p in self.perf_analyzer],
            "load_runs": [{"model": r.model, "scenario": r.scenario, "system": r.system,
                           "texts": r.texts, "result": r.result.to_dict(),
                           "server": r.server.to_dict() if r.server else None,
                           "engine": r.engine.to_dict() if r.engine else None,
                           "steps": r.steps.to_dict() if r.steps else None} for r in self.load_runs],
            "genai_perf": [g.to_row() for g in self.genai_perf],
            "comparisons": self.comparisons,
            "targets": self.targets,
            "notes": self.notes,
            "extra": self.extra,
        }


def write_raw(results: BenchResults, out_dir: Path) -> list[Path]:
    """``results.json`` and one CSV per table; returns the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [out_dir / "results.json"]
    written[0].write_text(json.dumps(_finite(results.to_dict()), indent=1))
    tables = {
        "loadgen.csv": [r.to_row() for r in results.load_runs],
        "perf_analyzer.csv": [p.to_row() for p in results.perf_analyzer],
        "ceiling.csv": [{"model": m, **p.to_row()} for m, p in results.ceiling],
        "static_batches.csv": [{"model": m, **b.to_row()} for m, b in results.static_batches],
        "comparisons.csv": results.comparisons,
        "genai_perf.csv": [g.to_row() for g in results.genai_perf],
        "samples.csv": [{"model": r.model, "scenario": r.scenario, "system": r.system,
                         "level": r.result.spec.level, **vars(s)}
                        for r in results.load_runs for s in r.result.samples],
    }
    # Scenario kinds: one CSV each, with the scalar columns (series stay in results.json).
    for key, kind_rows in results.extra.items():
        tables[f"{key}.csv"] = [{k: v for k, v in row.items() if not isinstance(v, list | dict)}
                                for row in kind_rows]
    for name, rows in tables.items():
        if rows:
            written.append(write_csv(rows, out_dir / name))
    return written


def write_csv(rows: list[dict[str, Any]], path: Path) -> Path:
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


def _finite(value: Any) -> Any:
    """JSON has no NaN: write ``null`` for metrics that had no samples."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
