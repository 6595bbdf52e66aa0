"""Scenario kinds as pure logic: parsing, the overload/long-prompt/soak analyses, their verdicts."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from ds_triton_perf.analysis import compare
from ds_triton_perf.kinds import logprobs, long_prompt, overload, registry, soak
from ds_triton_perf.memory import MB, MemorySample, ProcessMemory
from ds_triton_perf.recorder import SecondBin
from ds_triton_perf.results import BenchResults
from ds_triton_perf.scenarios import ScenarioError, default_scenarios, load_scenarios
from tests.perf.synthetic import histogram, overload_bins


def test_kinds_are_found_and_the_shipped_scenarios_use_each_of_them() -> None:
    assert {"overload", "long_prompt", "soak", "logprobs"} <= set(registry())
    suites = {s.model: s for s in default_scenarios()}
    assert {"overload", "soak"} <= set(suites["text_embedding"].extra)  # other kinds may join
    assert {"overload", "long_prompt", "soak", "logprobs"} <= set(suites["text_generation"].extra)
    (config,) = suites["text_generation"].extra["long_prompt"]
    assert config.prompt_tokens == 512


def test_kind_blocks_are_checked_like_the_rest_of_the_file(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text("model: m\ntask: embedding\ntexts: {a: {short: 1}}\noverload: {texts: a, surge_lod: 3}\n")
    with pytest.raises(ScenarioError, match="surge_lod"):
        load_scenarios(path)
    path.write_text("model: m\ntask: embedding\ntexts: {a: {short: 1}}\nlong_prompt: {streams: 2}\n")
    with pytest.raises(ScenarioError, match=r"long_prompt.*generation"):
        load_scenarios(path)
    path.write_text("model: m\ntask: embedding\ntexts: {a: {short: 1}}\noverload: {texts: b}\n")
    with pytest.raises(ScenarioError, match="'b'"):
        load_scenarios(path)
    path.write_text("model: m\ntask: embedding\ntexts: {a: {short: 1}}\novreload: {}\n")
    with pytest.raises(ScenarioError, match=r"ovreload.*overload"):
        load_scenarios(path)


def test_overload_analysis_finds_fast_rejections_goodput_and_recovery() -> None:
    row = overload.analyse(overload_bins(), (3.0, 3.0, 4.0), 100.0, 100.0, overload.OverloadScenario(),
                           metric="latency")
    assert row["reference_p99_ms"] == pytest.approx(20.0, rel=0.01)
    assert row["surge_p99_ms"] == pytest.approx(60.0, rel=0.01)
    assert row["p99_ratio"] == pytest.approx(3.0, rel=0.02)
    assert row["rejected"] == 600 and row["rejected_p99_ms"] == pytest.approx(3.0, rel=0.01)
    assert row["goodput_ratio"] == pytest.approx(0.95)
    # The first second after the surge is still slow (its requests queued behind the surge).
    assert row["recovery_s"] == 1.0
    assert row["surge_requests"] == 3 * 270 and row["surge_accepted"] == 210


def test_overload_that_never_recovers_and_other_failures_are_reported() -> None:
    bins = overload_bins()
    bins[-1].latency = histogram([500.0])
    bins[5].errors["Timeout"] += 4
    row = overload.analyse(bins, (3.0, 3.0, 4.0), 100.0, 100.0, overload.OverloadScenario(), metric="latency")
    assert row["recovery_s"] is None
    assert row["failures"] == {"Timeout": 4} and row["failed"] == 4
    results = BenchResults(meta={})
    row.update(model="m", scenario="surge", bars={"rejected_ms": 50.0, "p99_ratio": 3.0, "goodput": 0.9,
                                                  "recovery_s": 5.0})
    overload.verdicts(results, [row])
    verdicts = {t["target"]: t for t in results.targets}
    recovery = verdicts["m overload (surge): seconds until latency is back at the 70%-load level"]
    assert recovery["verdict"] == "not measured" and "not back within 4 s" in recovery["detail"]
    assert all(t["figure"] == "overload" for t in results.targets)


def test_overload_without_rejections_says_so() -> None:
    bins = [SecondBin(ok=10, items_done=10, latency=histogram([5.0] * 10)) for _ in range(6)]
    row = overload.analyse(bins, (2.0, 2.0, 2.0), 10.0, 10.0, overload.OverloadScenario(), metric="latency")
    assert row["rejected"] == 0 and row["rejected_p99_ms"] is None and row["recovery_s"] == 0.0
    assert Counter(row["series"]["offered_rps"]) == Counter({10: 6})


def test_long_prompt_gaps_are_split_by_the_prefill_windows() -> None:
    # Two streams at 4 ms per token; the first stalls 20 ms at 196 ms, inside the prefill window.
    streams = [[0.004 * i + (0.02 if i >= 50 else 0.0) for i in range(100)],
               [0.001 + 0.004 * i for i in range(100)]]
    trace = long_prompt._Trace(streams=streams, windows=[(0.19, 0.225)])
    row = long_prompt.analyse(trace, long_prompt.LongPromptScenario())
    assert row["itl_p50_ms"] == pytest.approx(4.0, abs=0.05)
    assert row["itl_p99_during_ms"] == pytest.approx(24.0, abs=0.2)
    assert row["itl_ratio"] == pytest.approx(6.0, abs=0.1)
    assert row["gaps_during"] >= 2 and row["arrivals"] == 1


def test_soak_summary_reports_growth_after_warm_up_and_leftovers() -> None:
    def at(t: float, stub_mb: int, fds: int, regions: frozenset[str]) -> MemorySample:
        return MemorySample(t, (ProcessMemory(1, "tritonserver", 100 * MB, 20, regions),
                                ProcessMemory(2, "stub m_0_0", stub_mb * MB, fds, regions)))

    base = frozenset({"a"})
    samples = [at(0, 200, 5, base), at(1, 400, 5, base), at(2, 420, 6, base), at(3, 450, 9, base | {"b"}),
               at(5, 230, 7, base | {"b"})]
    row = soak.summarise(samples, started=0.0, warm=1.0, ended=3.0)
    assert row["growth_mb"] == pytest.approx(50.0)
    assert row["total_peak_mb"] == pytest.approx(550.0)
    assert row["idle_excess_mb"] == pytest.approx(30.0)
    assert row["leftover"] == 2 + 1  # two descriptors, one region
    assert [p["role"] for p in row["processes"]] == ["stub m_0_0", "tritonserver"]
    assert row["series"]["stub m_0_0"] == [200.0, 400.0, 420.0, 450.0, 230.0]


def test_compare_runs_each_kinds_verdicts() -> None:
    results = BenchResults(meta={})
    row = long_prompt.analyse(long_prompt._Trace(streams=[[0.0, 0.004, 0.008]], windows=[]),
                              long_prompt.LongPromptScenario())
    row.update(model="g", scenario="long_prompt", streams=1, prompt_tokens=512, arrivals_unix=[], errors=[],
               itl_ratio_bar=2.0)
    results.extra["long_prompt"] = [row]
    compare(results)
    (verdict,) = results.targets
    assert verdict["verdict"] == "not measured" and verdict["figure"] == "long_prompt"


def test_logprobs_rounds_give_median_tokens_per_s_and_itl_of_each_side_and_their_ratio() -> None:
    def round_(top: int, tps: float, itl: float, completed: int = 50) -> dict[str, object]:
        return {"logprobs": top, "tokens_per_s": tps, "itl_p50_ms": itl, "itl_p99_ms": 2 * itl,
                "completed": completed, "errors": {}}

    rounds = [round_(0, 1000.0, 10.0), round_(5, 850.0, 12.0), round_(0, 600.0, 16.0),
              round_(5, 500.0, 20.0), round_(0, 1100.0, 9.0), round_(5, 0.0, 0.0, completed=0)]
    row = logprobs.summarise(rounds)
    # A round that completed nothing is left out of the medians (not counted as 0 tokens/s).
    assert row["plain_tps"] == 1000.0 and row["logprobs_tps"] == pytest.approx(675.0)
    assert row["plain_itl_p50_ms"] == 10.0 and row["logprobs_itl_p99_ms"] == pytest.approx(32.0)
    assert row["ratio"] == pytest.approx(0.675)
    results = BenchResults(meta={})
    logprobs.verdicts(results, [{"model": "g", "top": 5, "streams": 16, "ratio_bar": 0.8, **row,
                                 "rounds": rounds}])
    (verdict,) = results.targets
    assert verdict["figure"] == "logprobs" and "ITL p50 16.0 vs 10.0 ms" in verdict["detail"]
    assert logprobs.summarise([round_(0, 1000.0, 10.0)])["ratio"] is None


def test_the_sampler_cost_with_no_key_is_measured_against_the_bare_argmax_and_judged_as_a_share() -> None:
    from ds_triton_perf.sampler_cost import measure

    cost = measure(vocab=512, rows=4, blocks=3, steps_per_block=20)
    assert cost.sampler_us > 0 and cost.argmax_us > 0
    assert cost.overhead_us == cost.sampler_us - cost.argmax_us
    row = {"model": "g", "top": 5, "streams": 16, "ratio_bar": 0.8, "plain_tps": 1000.0,
           "logprobs_tps": 900.0, "ratio": 0.9, "plain_itl_p50_ms": 10.0, "logprobs_itl_p50_ms": 11.0,
           "rounds": [], "sampler_share_bar_pct": 1.0, "vocab": 512, "sampler_us": 30.0, "argmax_us": 10.0,
           "sampler_overhead_us": 20.0, "step_ms": 16.0, "sampler_share_pct": 0.125, "plain_spread_pct": 4.0}
    results = BenchResults(meta={})
    logprobs.verdicts(results, [row])
    _, sampler = results.targets
    assert sampler["verdict"] == "met" and "20.0 µs of a 16.0 ms step" in sampler["detail"]
    logprobs.verdicts(results, [{**row, "sampler_share_pct": 2.5}])
    assert results.targets[-1]["verdict"] == "missed"
