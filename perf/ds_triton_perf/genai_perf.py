"""Run genai-perf (0.0.16) against a streaming Triton model and read its JSON export.

genai-perf drives perf_analyzer with synthetic prompts of a target token
length and reports LLM metrics (TTFT, inter-token latency, output tokens/s).
It is installed without its dependencies (see requirements/dev.txt), so a
failure to start is reported as a note, never as a crash of the bench.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ds_triton.server_process.tritonserver import server_env

METRICS = ("time_to_first_token", "inter_token_latency", "request_latency")


@dataclass(frozen=True)
class GenaiPerfRun:
    """One genai-perf ``profile`` at a fixed concurrency over gRPC streaming."""

    model: str
    grpc_url: str
    tokenizer: Path
    concurrency: int
    input_tokens_mean: int = 32
    output_tokens_mean: int = 32
    num_prompts: int = 32
    measurement_ms: int = 3000

    def command(self, artifact_dir: Path) -> list[str]:
        return [
            str(Path(sys.executable).parent / "genai-perf"), "profile", "-m", self.model,
            "--endpoint-type", "kserve", "--backend", "vllm", "--streaming", "-u", self.grpc_url,
            "--concurrency", str(self.concurrency), "--num-prompts", str(self.num_prompts),
            "--synthetic-input-tokens-mean", str(self.input_tokens_mean),
            "--output-tokens-mean", str(self.output_tokens_mean), "--output-tokens-mean-deterministic",
            "--measurement-interval", str(self.measurement_ms), "-s", "999",
            "--tokenizer", str(self.tokenizer), "--artifact-dir", str(artifact_dir),
        ]  # fmt: skip


@dataclass
class GenaiPerfResult:
    """genai-perf's headline numbers for one run (ms, tokens/s)."""

    run: GenaiPerfRun
    ok: bool
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    output_tokens_per_s: float = 0.0
    requests_per_s: float = 0.0
    message: str = ""

    def to_row(self) -> dict[str, Any]:
        row: dict[str, Any] = {"model": self.run.model, "concurrency": self.run.concurrency,
                               "ok": self.ok, "output_tokens_per_s": round(self.output_tokens_per_s, 2),
                               "requests_per_s": round(self.requests_per_s, 3)}
        for name, stats in self.metrics.items():
            row.update({f"{name}_{k}_ms": round(v, 3) for k, v in stats.items()})
        if not self.ok:
            row["message"] = self.message[-300:]
        return row


def run_genai_perf(run: GenaiPerfRun, work_dir: Path, timeout_s: float = 300.0) -> GenaiPerfResult:
    """Run one profile; a failure (missing dependency, server error) returns ``ok=False``."""
    artifact_dir = work_dir / f"genai_perf_c{run.concurrency}"
    artifact_dir.mkdir(parents=True, exist_ok=True)
    env = server_env()
    env["HF_HUB_OFFLINE"] = "1"
    try:
        done = subprocess.run(run.command(artifact_dir), env=env, capture_output=True, text=True,
                              timeout=timeout_s, check=False, cwd=artifact_dir)
    except (subprocess.TimeoutExpired, OSError) as exc:
        return GenaiPerfResult(run, ok=False, message=f"genai-perf did not finish: {exc}")
    (artifact_dir / "genai_perf.log").write_text(done.stdout + done.stderr)
    exports = sorted(artifact_dir.rglob("profile_export_genai_perf.json"))
    if done.returncode != 0 or not exports:
        return GenaiPerfResult(run, ok=False, message=(done.stdout + done.stderr)[-2000:])
    return parse_export(run, json.loads(exports[-1].read_text()))


def parse_export(run: GenaiPerfRun, export: dict[str, Any]) -> GenaiPerfResult:
    """Pick p50/p99/avg of the latency metrics and the throughputs from genai-perf's JSON."""
    metrics = {name: {k: float(export[name][k]) for k in ("p50", "p99", "avg") if k in export[name]}
               for name in METRICS if name in export}
    return GenaiPerfResult(
        run, ok=True, metrics=metrics,
        output_tokens_per_s=float(export.get("output_token_throughput", {}).get("avg", 0.0)),
        requests_per_s=float(export.get("request_throughput", {}).get("avg", 0.0)),
    )
