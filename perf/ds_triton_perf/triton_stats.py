"""Server-side breakdown of a run: Triton statistics and Prometheus metrics, before/after.

Triton's ``/v2/models/<m>/stats`` counters are cumulative, so a run's share
is the difference of two snapshots. From it come the average time a request
spent queued vs in compute input/infer/output, the achieved batch size
(inferences per execution) and the batch-size distribution of executions.
"""

from __future__ import annotations

import json
import re
import urllib.request
from dataclasses import dataclass, field
from typing import Any

STAGES = ("queue", "compute_input", "compute_infer", "compute_output")
_METRIC_LINE = re.compile(r"^(?P<name>[a-zA-Z_:][\w:]*)(?P<labels>\{[^}]*\})?\s+(?P<value>\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class StatsSnapshot:
    """Raw counters at one moment."""

    model_stats: dict[str, Any]
    metrics: dict[str, float]


@dataclass
class ServerBreakdown:
    """One run's server-side share (times in µs per request)."""

    requests: int
    executions: int
    inferences: int
    stage_us: dict[str, float]
    batch_sizes: dict[int, int]
    failures: int
    metrics_delta: dict[str, float] = field(default_factory=dict)

    @property
    def achieved_batch_size(self) -> float:
        return self.inferences / self.executions if self.executions else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests, "executions": self.executions, "inferences": self.inferences,
            "achieved_batch_size": round(self.achieved_batch_size, 3),
            "stage_us": {k: round(v, 1) for k, v in self.stage_us.items()},
            "batch_sizes": {str(k): v for k, v in sorted(self.batch_sizes.items())},
            "failures": self.failures, "metrics_delta": self.metrics_delta,
        }


def snapshot(http_url: str, metrics_url: str | None, model: str, timeout: float = 5.0) -> StatsSnapshot:
    """Read the model's statistics and (if given) the Prometheus metrics of its server."""
    with urllib.request.urlopen(f"http://{http_url}/v2/models/{model}/stats", timeout=timeout) as resp:
        stats = json.load(resp)["model_stats"]
    merged = _merge_versions(stats)
    metrics: dict[str, float] = {}
    if metrics_url:
        with urllib.request.urlopen(metrics_url, timeout=timeout) as resp:
            metrics = parse_prometheus(resp.read().decode(), model)
    return StatsSnapshot(merged, metrics)


def parse_prometheus(text: str, model: str) -> dict[str, float]:
    """Series of ``model`` (and unlabelled server gauges), keyed ``name{label=value,...}``.

    The ``model`` and ``version`` labels are dropped and the rest kept (sorted), so
    histogram buckets (``le``) and per-phase or per-reason series stay apart;
    series that differ only by version are summed.
    """
    out: dict[str, float] = {}
    for line in text.splitlines():
        match = _METRIC_LINE.match(line.strip())
        if not match or line.startswith("#"):
            continue
        labels = dict(_LABEL.findall(match.group("labels") or ""))
        if labels and labels.get("model") != model:
            continue
        kept = sorted((k, v) for k, v in labels.items() if k not in ("model", "version"))
        key = match.group("name") + ("{" + ",".join(f"{k}={v}" for k, v in kept) + "}" if kept else "")
        try:
            out[key] = out.get(key, 0.0) + float(match.group("value"))
        except ValueError:
            continue
    return out


def diff(before: StatsSnapshot, after: StatsSnapshot) -> ServerBreakdown:
    """What happened on the server between two snapshots."""
    b, a = before.model_stats, after.model_stats
    requests = _count(a, "success") - _count(b, "success")
    stage_us = {}
    for stage in STAGES:
        count = _count(a, stage) - _count(b, stage)
        ns = _ns(a, stage) - _ns(b, stage)
        stage_us[stage] = ns / count / 1000.0 if count else 0.0
    sizes_before = _batch_counts(b)
    batch_sizes = {size: n - sizes_before.get(size, 0) for size, n in _batch_counts(a).items()}
    # Unchanged series are left out, except histogram buckets: a bucket's bounds need its neighbours.
    metrics_delta = {k: round(v - before.metrics.get(k, 0.0), 3) for k, v in after.metrics.items()
                     if v != before.metrics.get(k, 0.0) or "_bucket{" in k}
    return ServerBreakdown(
        requests=requests,
        executions=int(a.get("execution_count", 0)) - int(b.get("execution_count", 0)),
        inferences=int(a.get("inference_count", 0)) - int(b.get("inference_count", 0)),
        stage_us=stage_us,
        batch_sizes={k: v for k, v in batch_sizes.items() if v > 0},
        failures=_count(a, "fail") - _count(b, "fail"),
        metrics_delta=metrics_delta,
    )


def _merge_versions(stats: list[dict[str, Any]]) -> dict[str, Any]:
    """Sum every version's counters (a run may straddle a reload)."""
    merged: dict[str, Any] = {"inference_count": 0, "execution_count": 0, "inference_stats": {},
                              "batch_stats": []}
    for version in stats:
        merged["inference_count"] += int(version.get("inference_count", 0))
        merged["execution_count"] += int(version.get("execution_count", 0))
        for stage, value in version.get("inference_stats", {}).items():
            slot = merged["inference_stats"].setdefault(stage, {"count": 0, "ns": 0})
            slot["count"] += int(value.get("count", 0))
            slot["ns"] += int(value.get("ns", 0))
        merged["batch_stats"].extend(version.get("batch_stats", []))
    return merged


def _count(stats: dict[str, Any], stage: str) -> int:
    return int(stats.get("inference_stats", {}).get(stage, {}).get("count", 0))


def _ns(stats: dict[str, Any], stage: str) -> int:
    return int(stats.get("inference_stats", {}).get(stage, {}).get("ns", 0))


def _batch_counts(stats: dict[str, Any]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for entry in stats.get("batch_stats", []):
        size = int(entry["batch_size"])
        counts[size] = counts.get(size, 0) + int(entry.get("compute_infer", {}).get("count", 0))
    return counts
