"""The queue bench kind (issue 17): its analysis and verdict as pure logic, and one quick run of it on
a real server, nats-server and worker processes (mechanics only: the ratio is the bench's verdict)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ds_triton.server_process.tritonserver import TritonServer
from ds_triton_perf.cli import main
from ds_triton_perf.kinds import queue
from ds_triton_perf.results import BenchResults
from tests.perf.synthetic import histogram


def phase(texts: int, seconds: float, latencies_ms: list[float], **kw: object) -> queue.Phase:
    out = queue.Phase(texts=texts, started=10.0, ended=10.0 + seconds, done=len(latencies_ms), **kw)  # type: ignore[arg-type]
    out.latency = histogram(latencies_ms)
    return out


def test_the_queue_is_compared_with_the_mean_of_the_direct_passes_around_it() -> None:
    direct = [phase(1000, 10.0, [5.0] * 10), phase(1000, 12.5, [5.0] * 10)]  # 100 and 80 texts/s
    row = queue.analyse(direct, phase(1000, 11.0, [50.0] * 10), phase(0, 3.0, [20.0] * 99 + [90.0]),
                        phase(0, 3.0, [8.0] * 100))
    assert row["direct_texts_per_s"] == pytest.approx(90.0)
    assert row["queue_texts_per_s"] == pytest.approx(90.91, abs=0.01)
    assert row["throughput_ratio"] == pytest.approx(1.01, abs=0.001)
    assert row["queue_p50_ms"] == pytest.approx(20.0, rel=0.01)
    assert row["queue_p99_ms"] == pytest.approx(20.0, rel=0.01)
    assert row["direct_p50_ms"] == pytest.approx(8.0, rel=0.01)


def test_a_queue_pass_that_lost_jobs_has_no_ratio_and_the_verdict_says_why() -> None:
    lossy = phase(1000, 10.0, [5.0], missing=3, errors={"RetriesExhausted": 1})
    row = queue.analyse([phase(1000, 10.0, [5.0])], lossy, None, None)
    assert row["throughput_ratio"] is None and row["queue_p50_ms"] is None
    row.update(model="m", scenario="queue", workers=2, concurrency=16, ratio_bar=0.9, jobs=1000,
               texts_per_job=1, latency_rate_jobs_per_s=0.0, latency_load=0.5, latency_s=3.0)
    results = BenchResults(meta={})
    queue.verdicts(results, [row])
    (verdict,) = results.targets
    assert verdict["verdict"] == "not measured"
    assert "3 job(s) without a result" in verdict["detail"] and "1 RetriesExhausted" in verdict["detail"]
    section = queue.section("m", [row], results)
    assert section is not None and [len(t.rows) for t in section.tables] == [1, 1]


SUITE = """
model: text_embedding
task: embedding
texts:
  short: {short: 1.0}
queue: {texts: short, quick_jobs: 60, concurrency: 8, workers: 2, quick_latency_s: 1.5}
"""


@pytest.mark.server
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_quick_queue_run_measures_both_paths_on_the_same_server(triton_server: TritonServer,
                                                                   tmp_path: Path, repo_root: Path) -> None:
    scenarios = tmp_path / "scenarios"
    scenarios.mkdir()
    (scenarios / "text_embedding.yaml").write_text(SUITE)
    code = main(["bench", "--quick", "--no-progress", "--out", str(tmp_path / "out"), "--scenarios",
                 str(scenarios), "--model-repository", str(repo_root / "model_repository"), "--only", "queue",
                 "--http-url", triton_server.http_url, "--grpc-url", triton_server.grpc_url,
                 "--metrics-url", triton_server.metrics_url])
    assert code == 0
    (run_dir,) = (tmp_path / "out").iterdir()
    (row,) = json.loads((run_dir / "results.json").read_text())["extra"]["queue"]
    # Every job came back once on both paths; the open-loop passes measured latency.
    assert row["queue_burst"]["jobs_done"] == 60 and row["queue_burst"]["missing"] == 0
    assert [p["jobs_done"] for p in row["direct_bursts"]] == [60, 60]
    assert row["throughput_ratio"] > 0 and row["queue_p99_ms"] >= row["queue_p50_ms"] > 0
    assert row["direct_open"]["jobs_done"] > 0 and row["queue_open"]["missing"] == 0
    summary = (run_dir / "summary.md").read_text()
    assert "Queue-driven inference (NATS JetStream workers)" in summary
    assert "embed throughput through NATS workers" in summary
    # The workers were stopped by SIGTERM (they log it) and nats-server with them.
    logs = [p.read_text() for p in (run_dir / "queue-queue").glob("worker-*.log")]
    assert len(logs) == 2 and all("stopped" in log for log in logs)
