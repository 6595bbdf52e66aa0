"""``ds-triton-perf bench`` end to end on a tiny suite: every peer, the ceiling, the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ds_triton.server_process.tritonserver import TritonServer
from ds_triton_perf.cli import main

pytestmark = [pytest.mark.server, pytest.mark.slow]

TINY_SUITE = """
model: text_embedding
task: embedding
texts:
  uniform: {short: 1.0}
ceiling: {batch_sizes: [4], quick_batch_sizes: [4], duration_s: 0.5, quick_duration_s: 0.3,
          texts: [uniform]}
loadgen:
  - {name: closed, mode: closed, sweep: [1], quick_sweep: [1, 4], texts: uniform,
     systems: [triton, pytriton, rest], quick_duration_s: 1, warmup_s: 0.2}
  - {name: open, mode: open, sweep: ["50%"], texts: uniform, systems: [triton],
     quick_duration_s: 1, warmup_s: 0.2}
perf_analyzer:
  - {name: pa, mode: concurrency, sweep: [2], texts: uniform, quick_measurement_ms: 800}
"""


def test_quick_bench_writes_report_summary_and_raw_data(triton_server: TritonServer, tmp_path: Path,
                                                         repo_root: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    scenarios = tmp_path / "scenarios"
    scenarios.mkdir()
    (scenarios / "text_embedding.yaml").write_text(TINY_SUITE)
    code = main(["bench", "--quick", "--no-progress", "--out", str(tmp_path / "out"),
                 "--scenarios", str(scenarios), "--model-repository", str(repo_root / "model_repository"),
                 "--http-url", triton_server.http_url, "--grpc-url", triton_server.grpc_url,
                 "--metrics-url", triton_server.metrics_url])
    assert code == 0
    (run_dir,) = (tmp_path / "out").iterdir()
    names = {p.name for p in run_dir.iterdir()}
    assert {"report.html", "summary.md", "results.json", "loadgen.csv", "perf_analyzer.csv",
            "ceiling.csv", "samples.csv", "comparisons.csv"} <= names
    results = json.loads((run_dir / "results.json").read_text())
    systems = {r["system"] for r in results["load_runs"]}
    assert systems == {"triton", "pytriton", "rest"}
    assert all(r["result"]["errors"] == {} for r in results["load_runs"])
    comparison = {c["system"]: c["project_ratio"] for c in results["comparisons"]}
    systems = {"in-process ceiling", "in-process naive loop", "PyTriton (@batch)", "naive REST (FastAPI)"}
    assert systems <= set(comparison)
    assert all(ratio and ratio > 0 for ratio in comparison.values())
    html = (run_dir / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 5
    printed = capsys.readouterr().out
    assert "Peers and ceiling" in printed and "Targets" in printed
