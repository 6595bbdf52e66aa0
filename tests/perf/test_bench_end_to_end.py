"""``ds-triton-perf bench`` end to end on tiny suites: every peer and the ceiling; every scenario kind
on both models with the bench's own server; the report opened in headless Chromium."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from ds_triton.server_process.tritonserver import TritonServer
from ds_triton_perf.cli import main
from tests.perf.test_report import assert_page_is_clean

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
     systems: [triton, pytriton, rest], quick_duration_s: 2, warmup_s: 0.5}
  - {name: open, mode: open, sweep: ["50%"], texts: uniform, systems: [triton],
     quick_duration_s: 1, warmup_s: 0.2}
perf_analyzer:
  - {name: pa, mode: concurrency, sweep: [2], texts: uniform, quick_measurement_ms: 800}
"""

KINDS_EMBEDDING = """
model: text_embedding
task: embedding
texts:
  uniform: {short: 1.0}
  soak: {short: 0.6, long: 0.2, max: 0.2}
loadgen:
  - {name: closed, mode: closed, sweep: [1], quick_sweep: [1, 4], texts: uniform, systems: [triton],
     quick_duration_s: 1, warmup_s: 0.2}
overload: {texts: uniform, capacity_concurrency: 8, quick_capacity_s: 1, quick_reference_s: 2,
           quick_surge_s: 2, quick_after_s: 2}
soak: {texts: soak, quick_warmup_requests: 20, quick_requests: 80, concurrency: 2, batch_sizes: [1, 4],
       quick_idle_s: 1, sample_interval_s: 0.25}
"""

KINDS_GENERATION = """
model: text_generation
task: generation
texts:
  mixed: {short: 0.7, medium: 0.3}
generation: {prompts: mixed, max_tokens: [8, 16], quick_requests: 8, static_batch_size: 4}
loadgen:
  - {name: lg_streams, mode: closed, sweep: [1], quick_sweep: [1, 4], texts: mixed, systems: [triton],
     protocol: http, quick_duration_s: 1.5, warmup_s: 0.2}
long_prompt: {streams: 3, stream_max_tokens: 32, quick_arrivals: 2, every_s: 0.5, settle_s: 0.5}
overload: {capacity_concurrency: 4, quick_capacity_s: 1, quick_reference_s: 2, quick_surge_s: 2,
           quick_after_s: 2}
soak: {quick_warmup_requests: 10, quick_requests: 30, concurrency: 2, max_tokens: [1, 8]}
"""


def _bench(tmp_path: Path, repo_root: Path, suites: dict[str, str], *server_args: str) -> Path:
    scenarios = tmp_path / "scenarios"
    scenarios.mkdir()
    for model, text in suites.items():
        (scenarios / f"{model}.yaml").write_text(text)
    code = main(["bench", "--quick", "--no-progress", "--out", str(tmp_path / "out"), "--scenarios",
                 str(scenarios), "--model-repository", str(repo_root / "model_repository"), *server_args])
    assert code == 0
    (run_dir,) = (tmp_path / "out").iterdir()
    return run_dir


def test_quick_bench_writes_report_summary_and_raw_data(triton_server: TritonServer, tmp_path: Path,
                                                         repo_root: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = _bench(tmp_path, repo_root, {"text_embedding": TINY_SUITE},
                     "--http-url", triton_server.http_url, "--grpc-url", triton_server.grpc_url,
                     "--metrics-url", triton_server.metrics_url)
    names = {p.name for p in run_dir.iterdir()}
    assert {"report.html", "summary.md", "results.json", "loadgen.csv", "perf_analyzer.csv",
            "ceiling.csv", "samples.csv", "comparisons.csv"} <= names
    results = json.loads((run_dir / "results.json").read_text())
    assert results["meta"]["failed_points"] == [], results["notes"]
    systems = {r["system"] for r in results["load_runs"]}
    assert systems == {"triton", "pytriton", "rest"}
    assert all(r["result"]["errors"] == {} for r in results["load_runs"])
    comparison = {c["system"]: c["project_ratio"] for c in results["comparisons"]}
    systems = {"in-process ceiling", "in-process naive loop", "PyTriton (@batch)", "naive REST (FastAPI)"}
    assert systems <= set(comparison)
    assert all(ratio and ratio > 0 for ratio in comparison.values())
    targets = {t["target"]: t for t in results["targets"]}
    gain = targets["text_embedding share of the ceiling's gain over naive REST (uniform texts)"]
    assert gain["bar"] == "≥ 0.9" and gain["figure"] == "throughput"
    assert not any("≥ 3×" in t["bar"] for t in results["targets"])
    html = (run_dir / "report.html").read_text()
    figures = ("throughput", "latency", "latency-histogram", "batching", "time")
    assert all(f"<figure id='text_embedding-{figure}'>" in html for figure in figures)
    # No step timeline: the session's server was not started with DS_TRITON_PROFILE_DIR.
    assert html.count("data:image/png;base64,") == len(figures)
    printed = capsys.readouterr().out
    assert "Verdicts" in printed and "Throughput: this project, peers and the ceiling" in printed


def test_every_kind_on_both_models_and_the_report_in_headless_chromium(tmp_path: Path,
                                                                        repo_root: Path) -> None:
    run_dir = _bench(tmp_path, repo_root, {"text_embedding": KINDS_EMBEDDING,
                                           "text_generation": KINDS_GENERATION}, "--start-server")
    results = json.loads((run_dir / "results.json").read_text())
    assert results["meta"]["failed_points"] == [], results["notes"]
    extra = results["extra"]
    assert {r["model"] for r in extra["overload"]} == {"text_embedding", "text_generation"}
    for row in extra["overload"]:
        assert row["capacity_rps"] > 0 and row["surge_requests"] > row["capacity_rps"]
        assert sum(row["series"]["offered_rps"]) > 0
    (prompt,) = extra["long_prompt"]
    assert prompt["prompt_tokens"] == 512 and prompt["arrivals"] == 2 and prompt["errors"] == []
    assert prompt["gaps_outside"] > 0
    (soak,) = extra["soak"]
    roles = {p["role"] for p in soak["processes"]}
    assert {"tritonserver", "stub text_embedding_0_0", "stub text_generation_0_0"} <= roles
    # Mechanics only: every request is accounted for and bad ones are refused with a 4xx (whether good
    # ones all succeed on a machine this busy is the benchmark's verdict, not this test's).
    assert soak["bad_server_errors"] == 0
    for model, counts in soak["counts"].items():
        sent = (counts["good_ok"] + sum(counts["good_failed"].values()) + counts["bad_refused"]
                + counts["bad_shed"])  # a bad request shed by the queue policy on a busy machine
        assert sent == soak["warmup_requests"][model] + soak["requests"][model], model
        assert counts["good_ok"] > 0 and counts["bad_refused"] > 0 and counts["bad_accepted"] == 0, model
    streams = [r for r in results["load_runs"] if r["model"] == "text_generation"]
    assert streams and all(r["engine"] and r["engine"]["decode_steps"] > 0 for r in streams)
    assert {"overload.csv", "long_prompt.csv", "soak.csv"} <= {p.name for p in run_dir.iterdir()}
    kinds = {t["figure"] for t in results["targets"]}
    assert {"overload", "long_prompt", "soak", "time", "batching"} <= kinds
    if importlib.util.find_spec("ds_triton.profiling") is not None:  # the step timeline (issue 14)
        assert any(r["steps"] for r in streams)
        assert "id='text_generation-timeline'" in (run_dir / "report.html").read_text()
    assert_page_is_clean(run_dir / "report.html")
