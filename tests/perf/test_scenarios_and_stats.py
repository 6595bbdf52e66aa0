"""Pure logic: scenario files, relative rates, Triton statistics diffs, perf_analyzer CSV."""

from __future__ import annotations

from pathlib import Path

import pytest

from ds_triton_perf.perf_analyzer import PaRun, parse_csv
from ds_triton_perf.scenarios import ScenarioError, default_scenarios, load_scenarios, resolve_rate
from ds_triton_perf.texts import LENGTHS, text_mix
from ds_triton_perf.triton_stats import StatsSnapshot, diff, parse_prometheus


def test_shipped_scenarios_parse_and_cover_every_scenario_type() -> None:
    suites = {s.model: s for s in default_scenarios()}
    embedding = suites["text_embedding"]
    assert {s.mode for s in embedding.perf_analyzer} == {"concurrency", "request_rate"}
    assert {s.mode for s in embedding.loadgen} == {"closed", "open"}
    assert any(max(s.batch_sizes) > 1 for s in embedding.perf_analyzer)
    assert {"triton", "pytriton", "rest"} <= {sys for s in embedding.loadgen for sys in s.systems}
    assert embedding.ceiling is not None
    generation = suites["text_generation"]
    assert all(s.streaming and s.protocol == "grpc" for s in generation.perf_analyzer)


def test_unknown_keys_and_undefined_text_mixes_are_named(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("model: m\ntask: embedding\ntexts: {a: {short: 1}}\n"
                    "loadgen:\n  - {name: x, mode: closed, sweep: [1], texts: a, concurency: 2}\n")
    with pytest.raises(ScenarioError, match="concurency"):
        load_scenarios(path)
    path.write_text("model: m\ntask: embedding\ntexts: {a: {short: 1}}\n"
                    "loadgen:\n  - {name: x, mode: closed, sweep: [1], texts: b}\n")
    with pytest.raises(ScenarioError, match="'b'"):
        load_scenarios(path)


def test_relative_rates() -> None:
    assert resolve_rate(20, None) == 20.0
    assert resolve_rate("50%", 80.0) == 40.0
    with pytest.raises(ScenarioError, match="relative"):
        resolve_rate("50%", None)


def test_text_mixes_are_deterministic_and_follow_length_classes() -> None:
    texts = text_mix({"short": 1.0}, count=20)
    assert texts == text_mix({"short": 1.0}, count=20)
    low, high = LENGTHS["short"]
    assert all(low <= len(t.split()) <= high for t in texts)
    with pytest.raises(ValueError, match="weights"):
        text_mix({})


def _stats(success: int, queue_ns: int, infer_ns: int, executions: int, sizes: dict[int, int]) -> dict:
    return {"inference_count": success, "execution_count": executions,
            "inference_stats": {"success": {"count": success, "ns": 0},
                                "queue": {"count": success, "ns": queue_ns},
                                "compute_infer": {"count": success, "ns": infer_ns}},
            "batch_stats": [{"batch_size": s, "compute_infer": {"count": n, "ns": 0}}
                            for s, n in sizes.items()]}


def test_stats_diff_gives_per_request_stage_times_and_achieved_batch() -> None:
    before = StatsSnapshot(_stats(10, 1_000_000, 5_000_000, 10, {1: 10}), {"nv_inference_count": 10})
    after = StatsSnapshot(_stats(50, 5_000_000, 25_000_000, 15, {1: 10, 8: 5}),
                          {"nv_inference_count": 50})
    breakdown = diff(before, after)
    assert breakdown.requests == 40
    assert breakdown.stage_us["queue"] == pytest.approx(100.0)
    assert breakdown.stage_us["compute_infer"] == pytest.approx(500.0)
    assert breakdown.achieved_batch_size == pytest.approx(8.0)
    assert breakdown.batch_sizes == {8: 5}
    assert breakdown.metrics_delta == {"nv_inference_count": 40.0}


def test_prometheus_parsing_keeps_the_model_series() -> None:
    text = ('# HELP x\nnv_inference_count{model="a",version="1"} 7\n'
            'nv_inference_count{model="b",version="1"} 9\n'
            'nv_inference_request_failure{model="a",reason="BACKEND",version="1"} 2\n'
            "nv_cpu_utilization 0.5\n")
    assert parse_prometheus(text, "a") == {"nv_inference_count": 7.0,
                                           "nv_inference_request_failure{reason=BACKEND}": 2.0,
                                           "nv_cpu_utilization": 0.5}


def test_perf_analyzer_command_and_csv(tmp_path: Path) -> None:
    run = PaRun("m", "127.0.0.1:1", "grpc", "request_rate", 12.5, tmp_path / "in.json")
    command = run.command(tmp_path / "o.csv")
    assert command[command.index("--request-rate-range") + 1] == "12.5"
    assert "--async" in command and "poisson" in command
    streaming = PaRun("m", "u", "grpc", "concurrency", 4, tmp_path / "in.json", streaming=True)
    assert {"--streaming", "--async"} <= set(streaming.command(tmp_path / "o.csv"))
    csv_path = tmp_path / "o.csv"
    csv_path.write_text(
        "Concurrency,Inferences/Second,Client Send,Network+Server Send/Recv,Server Queue,"
        "Server Compute Input,Server Compute Infer,Server Compute Output,Client Recv,p50 latency,"
        "p90 latency,p95 latency,p99 latency,Avg latency,request/response,response wait\n"
        "4,61.5,6,1136,1953,65,43740,1151,3,72059,93092,115278,153486,63506,9,63503\n")
    result = parse_csv(run, csv_path)
    assert result.ok and result.throughput == 61.5
    assert result.latency_ms["p99"] == pytest.approx(153.486)
    assert result.server_us["queue"] == 1953
