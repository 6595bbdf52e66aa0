"""The benchmark kind that measures the gateway's overhead: its summary and verdicts (no server)."""

from __future__ import annotations

import urllib.request
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from ds_triton_perf.kinds import gateway as kind
from ds_triton_perf.results import BenchResults
from tests.conftest import MODEL_REPOSITORY


def result(items_per_s: float, ttft_p50: float | None = None, duration_s: float = 10.0) -> Any:
    return SimpleNamespace(duration_s=duration_s, items_per_s=items_per_s, throughput_rps=items_per_s / 8,
                           latency_ms={"p50": 20.0}, ttft_ms={} if ttft_p50 is None else {"p50": ttft_p50},
                           error_count=0, loadgen_cpu_cores=0.5)  # fmt: skip


def test_embedding_rounds_are_pooled_and_their_ratio_judged() -> None:
    measured = {
        "direct": [result(100.0), result(300.0, duration_s=30.0)],
        "gateway": [result(225.0, duration_s=40.0)],
    }
    row = kind.summarise(measured, generation=False)
    assert row["direct_items_per_s"] == 250.0  # items over seconds, not a mean of rates
    assert row["throughput_ratio"] == 0.9 and row["ttft_added_ms"] is None
    row.update(
        model="e",
        task="embedding",
        load="8 texts",
        throughput_bar=0.9,
        ttft_added_ms_bar=2.0,
        scenario="gateway",
    )
    results = BenchResults(meta={})
    kind.verdicts(results, [row])
    (verdict,) = results.targets
    assert verdict["verdict"] == "met" and verdict["measured"] == 0.9
    assert kind.section("e", [row], results) is not None


def test_streaming_ttft_added_is_the_difference_of_the_median_p50s() -> None:
    measured = {
        "direct": [result(50.0, 10.0), result(50.0, 14.0)],
        "gateway": [result(50.0, 13.0), result(50.0, 15.5)],
    }
    row = kind.summarise(measured, generation=True)
    assert row["direct_ttft_p50_ms"] == 12.0 and row["gateway_ttft_p50_ms"] == 14.25
    assert row["ttft_added_ms"] == 2.25
    row.update(
        model="g",
        task="generation",
        load="1 stream",
        throughput_bar=0.9,
        ttft_added_ms_bar=2.0,
        scenario="gateway",
    )
    results = BenchResults(meta={})
    kind.verdicts(results, [row])
    (verdict,) = results.targets
    assert verdict["verdict"] == "missed" and verdict["bar"] == "≤ 2 ms"


def test_the_kinds_gateway_starts_in_front_of_the_server_and_stops(tmp_path: Path) -> None:
    ctx: Any = SimpleNamespace(server=SimpleNamespace(grpc="127.0.0.1:9"), model_repository=MODEL_REPOSITORY,
                               out_dir=tmp_path)  # fmt: skip
    with kind.gateway_process(ctx) as base_url:
        answer = urllib.request.urlopen(base_url + "/health", timeout=10)
        assert answer.status == 200
        answer.close()
    (log,) = tmp_path.glob("gateway-*.log")
    assert "grpc://127.0.0.1:9" in log.read_text()  # it fronted the server it was given, and logged there
    with pytest.raises(OSError):  # and it is gone
        urllib.request.urlopen(base_url + "/health", timeout=2)
