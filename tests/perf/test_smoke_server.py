"""Short smoke runs of every scenario type against a real tritonserver.

Each run is a second or two: they prove the plumbing (perf_analyzer closed and
open loop, the load generator closed and open, streams, server statistics),
not the numbers; those come from ``make bench``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ds_triton.server_process.tritonserver import TritonServer
from ds_triton_perf.loadgen import LoadResult, LoadSpec, run_load
from ds_triton_perf.perf_analyzer import PaRun, run_perf_analyzer
from ds_triton_perf.targets import Endpoint, open_embedding_target
from ds_triton_perf.targets.generation import open_generation_target
from ds_triton_perf.texts import text_mix, write_input_data
from ds_triton_perf.triton_stats import diff, snapshot

pytestmark = pytest.mark.server

EMBEDDING = "text_embedding"
GENERATION = "text_generation"
TEXTS = text_mix({"short": 0.5, "medium": 0.5}, count=16)


def _requires(server: TritonServer, model: str) -> None:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://{server.http_url}/v2/models/{model}/ready", timeout=2):
            return
    except (urllib.error.URLError, OSError):
        pytest.skip(f"{model} is not served by the shipped repository")


@pytest.mark.parametrize("mode,level", [("concurrency", 2), ("request_rate", 4)])
def test_perf_analyzer_closed_and_open_loop(triton_server: TritonServer, tmp_path: Path, mode: str,
                                            level: float) -> None:
    data = write_input_data(TEXTS, tmp_path / "input.json")
    run = PaRun(EMBEDDING, triton_server.grpc_url, "grpc", mode, level, data,
                measurement_ms=1000)
    result = run_perf_analyzer(run, tmp_path)
    assert result.ok, result.message
    assert result.throughput > 0
    assert result.latency_ms["p99"] >= result.latency_ms["p50"] > 0
    assert set(result.server_us) >= {"queue", "compute_infer"}


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_load_generator_closed_and_open_loop_with_server_breakdown(triton_server: TritonServer,
                                                                   protocol: str) -> None:
    url = triton_server.grpc_url if protocol == "grpc" else triton_server.http_url
    endpoint = Endpoint("triton", "triton", url, EMBEDDING, protocol)
    before = snapshot(triton_server.http_url, triton_server.metrics_url, EMBEDDING)

    async def drive() -> list[LoadResult]:
        async with open_embedding_target(endpoint, TEXTS, batch_size=2) as request:
            closed = await run_load(request, LoadSpec(mode="closed", concurrency=3, duration_s=1.5,
                                                      warmup_s=0.3))
            opened = await run_load(request, LoadSpec(mode="open", rate=6, duration_s=1.5,
                                                      warmup_s=0.3))
        return [closed, opened]

    closed, opened = asyncio.run(drive())
    breakdown = diff(before, snapshot(triton_server.http_url, triton_server.metrics_url, EMBEDDING))
    for result in (closed, opened):
        assert result.errors == {}
        assert result.completed > 0
        assert result.items_per_s == pytest.approx(2 * result.throughput_rps)
    assert breakdown.inferences >= 2 * (closed.completed + opened.completed)
    assert breakdown.stage_us["compute_infer"] > 0
    assert breakdown.metrics_delta["nv_inference_count"] == breakdown.inferences


def test_load_generator_counts_bad_requests_as_errors(triton_server: TritonServer) -> None:
    endpoint = Endpoint("triton", "triton", triton_server.http_url, EMBEDDING, "http")

    async def drive() -> LoadResult:
        async with open_embedding_target(endpoint, [""]) as request:  # empty text: rejected
            return await run_load(request, LoadSpec(mode="closed", concurrency=1, duration_s=0.5,
                                                    warmup_s=0))

    result = asyncio.run(drive())
    assert result.completed == 0
    assert sum(result.errors.values()) > 0


def test_streams_report_ttft_and_inter_token_latency(triton_server: TritonServer) -> None:
    _requires(triton_server, GENERATION)
    requests = [(text, tokens) for text, tokens in zip(TEXTS[:4], (4, 8, 4, 8), strict=True)]

    async def drive() -> LoadResult:
        async with open_generation_target(triton_server.http_url, GENERATION, requests) as request:
            return await run_load(request, LoadSpec(mode="closed", concurrency=2, duration_s=1.5,
                                                    warmup_s=0.2, request_timeout_s=60))

    result = asyncio.run(drive())
    assert result.errors == {}
    assert result.completed > 0
    assert result.tokens_per_s > 0
    assert 0 < result.ttft_ms["p50"] <= result.latency_ms["p50"]
    # Each stream has 4-8 tokens, so there are gaps between tokens and each is shorter than a call.
    assert 0 < result.itl_ms["p50"] < result.latency_ms["p50"]


def test_perf_analyzer_streams_the_generation_model(triton_server: TritonServer, tmp_path: Path) -> None:
    import json

    _requires(triton_server, GENERATION)
    data = tmp_path / "gen.json"
    data.write_text(json.dumps({"data": [{
        "text_input": [text], "stream": [True], "exclude_input_in_output": [True],
        "sampling_parameters": [json.dumps({"temperature": 0, "max_tokens": 4, "ignore_eos": True})],
    } for text in TEXTS[:4]]}))
    run = PaRun(GENERATION, triton_server.grpc_url, "grpc", "concurrency", 1, data, streaming=True,
                measurement_ms=1000)
    result = run_perf_analyzer(run, tmp_path)
    assert result.ok, result.message
    assert result.throughput > 0


def test_locustfile_runs_headless_on_the_client_package(triton_server: TritonServer, tmp_path: Path,
                                                       repo_root: Path) -> None:
    import subprocess
    import sys

    locust = Path(sys.executable).parent / "locust"
    done = subprocess.run(
        [str(locust), "-f", str(repo_root / "perf" / "locustfile.py"), "--host",
         f"http://{triton_server.http_url}", "--headless", "-u", "2", "-r", "2", "-t", "10s",
         "--only-summary", "--csv", str(tmp_path / "locust"), "EmbeddingUser"],
        capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    stats = (tmp_path / "locust_stats.csv").read_text()
    assert "text_embedding x1" in stats
    row = next(line for line in stats.splitlines() if "text_embedding x1" in line).split(",")
    assert int(row[2]) > 0 and int(row[3]) == 0  # requests made, none failed


def test_genai_perf_profiles_the_stream(triton_server: TritonServer, tmp_path: Path,
                                        repo_root: Path) -> None:
    from ds_triton.spec import ModelSpec
    from ds_triton_perf.genai_perf import GenaiPerfRun, run_genai_perf

    _requires(triton_server, GENERATION)
    version_dir = repo_root / "model_repository" / GENERATION / "1"
    tokenizer = ModelSpec.load(version_dir).resolve_checkpoint(version_dir)
    run = GenaiPerfRun(GENERATION, triton_server.grpc_url, tokenizer, concurrency=1,
                       input_tokens_mean=16, output_tokens_mean=8, num_prompts=4, measurement_ms=1000)
    result = run_genai_perf(run, tmp_path)
    assert result.ok, result.message
    assert result.output_tokens_per_s > 0
    assert result.metrics["time_to_first_token"]["p50"] > 0
