"""Run Triton's perf_analyzer for one sweep point and read its CSV.

perf_analyzer links libcudart, so it always runs with
``ds_triton.server_process.tritonserver.server_env()``. Each sweep value is its own
invocation, so a failing point is reported alone and the others still count.
"""

from __future__ import annotations

import csv
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ds_triton.server_process.tritonserver import server_env

PaMode = Literal["concurrency", "request_rate"]


@dataclass(frozen=True)
class PaRun:
    """One perf_analyzer invocation."""

    model: str
    url: str
    protocol: Literal["http", "grpc"]
    mode: PaMode
    level: float
    input_data: Path
    batch_size: int = 1
    distribution: Literal["poisson", "constant"] = "poisson"
    streaming: bool = False
    measurement_ms: int = 3000
    max_trials: int = 3

    def command(self, csv_path: Path) -> list[str]:
        binary = Path(sys.executable).parent / "perf_analyzer"
        args = [
            str(binary), "-m", self.model, "-u", self.url, "-i", self.protocol,
            "--input-data", str(self.input_data), "-b", str(self.batch_size),
            "--measurement-interval", str(self.measurement_ms),
            # Fixed windows instead of "run until stable": a bounded run time on a shared CPU.
            "--stability-percentage", "999", "--max-trials", str(self.max_trials),
            "-f", str(csv_path), "--verbose-csv",
        ]  # fmt: skip
        if self.mode == "concurrency":
            args += ["--concurrency-range", str(int(self.level))]
        else:
            # Open loop needs async sends, or perf_analyzer itself falls behind the schedule.
            args += ["--request-rate-range", f"{self.level:g}",
                     "--request-distribution", self.distribution, "--async"]
        if self.streaming:
            args += ["--streaming"] + (["--async"] if self.mode == "concurrency" else [])
        return args


@dataclass
class PaResult:
    """Parsed perf_analyzer output for one point (latencies in ms)."""

    run: PaRun
    ok: bool
    throughput: float = 0.0
    latency_ms: dict[str, float] = field(default_factory=dict)
    server_us: dict[str, float] = field(default_factory=dict)
    message: str = ""

    def to_row(self, scenario: str) -> dict[str, Any]:
        row: dict[str, Any] = {
            "scenario": scenario, "mode": self.run.mode, "level": self.run.level,
            "protocol": self.run.protocol, "batch_size": self.run.batch_size,
            "streaming": self.run.streaming, "ok": self.ok, "throughput_infer_per_s": self.throughput,
        }
        row.update({f"latency_{k}_ms": v for k, v in self.latency_ms.items()})
        row.update({f"server_{k}_us": v for k, v in self.server_us.items()})
        if not self.ok:
            row["message"] = self.message[-300:]
        return row


_LATENCY_COLUMNS = {"p50": "p50 latency", "p90": "p90 latency", "p95": "p95 latency",
                    "p99": "p99 latency", "mean": "Avg latency"}
_SERVER_COLUMNS = {"queue": "Server Queue", "compute_input": "Server Compute Input",
                   "compute_infer": "Server Compute Infer", "compute_output": "Server Compute Output"}


def run_perf_analyzer(run: PaRun, work_dir: Path, timeout_s: float = 300.0) -> PaResult:
    """Run one point; a failure returns ``ok=False`` with the tool's output tail."""
    work_dir.mkdir(parents=True, exist_ok=True)
    csv_path = work_dir / f"pa_{run.mode}_{run.level:g}_b{run.batch_size}.csv"
    try:
        done = subprocess.run(run.command(csv_path), env=server_env(), capture_output=True, text=True,
                              timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        return PaResult(run, ok=False, message=f"perf_analyzer timed out after {timeout_s:.0f}s")
    (work_dir / f"{csv_path.stem}.log").write_text(done.stdout + done.stderr)
    if done.returncode != 0 or not csv_path.is_file():
        return PaResult(run, ok=False, message=(done.stdout + done.stderr)[-2000:])
    return parse_csv(run, csv_path)


def parse_csv(run: PaRun, csv_path: Path) -> PaResult:
    """Read the first data row of perf_analyzer's ``-f`` CSV (µs → ms for client latency)."""
    with csv_path.open() as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        return PaResult(run, ok=False, message=f"{csv_path} has no data rows")
    row = rows[0]
    latency = {k: float(row[c]) / 1000.0 for k, c in _LATENCY_COLUMNS.items() if row.get(c)}
    server = {k: float(row[c]) for k, c in _SERVER_COLUMNS.items() if row.get(c)}
    return PaResult(run, ok=True, throughput=float(row["Inferences/Second"]), latency_ms=latency,
                    server_us=server)
