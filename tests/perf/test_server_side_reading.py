"""Reading the server's side: engine metrics diffs, the step timeline contract, process memory."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from multiprocessing import shared_memory
from pathlib import Path

import pytest

from ds_triton_perf.engine_metrics import engine_run
from ds_triton_perf.memory import RssSampler, descendants, listening_pid, process_memory, role_of, sample
from ds_triton_perf.timeline import read_steps, step_stats, window
from ds_triton_perf.triton_stats import StatsSnapshot, diff, parse_prometheus

PROFILE_DIR = Path(__file__).parent / "fixtures" / "profile"  # written to the ds_triton.profiling contract
T0 = 1_800_000_000.0  # the fixture's first step

GENERATION_METRICS = """
# HELP ds_triton_generation_batch_occupancy Sequences advanced by each decode forward pass
ds_triton_generation_batch_occupancy_bucket{{model="g",version="1",le="1"}} {b1}
ds_triton_generation_batch_occupancy_bucket{{model="g",version="1",le="2"}} {b1}
ds_triton_generation_batch_occupancy_bucket{{model="g",version="1",le="4"}} {b4}
ds_triton_generation_batch_occupancy_bucket{{model="g",version="1",le="8"}} {b4}
ds_triton_generation_batch_occupancy_bucket{{model="g",version="1",le="+Inf"}} {b4}
ds_triton_generation_batch_occupancy_sum{{model="g",version="1"}} {total}
ds_triton_generation_batch_occupancy_count{{model="g",version="1"}} {b4}
ds_triton_generation_time_to_first_token_seconds_sum{{model="g",version="1"}} {ttft}
ds_triton_generation_time_to_first_token_seconds_count{{model="g",version="1"}} {first}
ds_triton_generation_tokens_total{{model="g",version="1"}} {tokens}
ds_triton_generation_forward_passes_total{{model="g",phase="prefill",version="1"}} {prefill}
ds_triton_generation_forward_passes_total{{model="g",phase="decode",version="1"}} {b4}
ds_triton_generation_tokens_total{{model="other",version="1"}} 99
"""


def _metrics(b1: int, b4: int, total: int, ttft: float, first: int, tokens: int, prefill: int) -> dict:
    return parse_prometheus(GENERATION_METRICS.format(b1=b1, b4=b4, total=total, ttft=ttft, first=first,
                                                      tokens=tokens, prefill=prefill), "g")


def test_engine_metrics_over_a_run_come_from_the_diff() -> None:
    before = StatsSnapshot({}, _metrics(10, 10, 10, 0.5, 10, 30, 10))
    # During the run: 100 decode steps of 3-4 sequences, 20 first tokens at 25 ms each.
    after = StatsSnapshot({}, _metrics(10, 110, 360, 1.0, 30, 430, 30))
    run = engine_run(diff(before, after).metrics_delta)
    assert run is not None
    assert run.occupancy == {"1": 0, "2": 0, "3–4": 100, "5–8": 0, "> 8": 0}
    assert run.occupancy_mean == pytest.approx(3.5)
    assert run.ttft_ms == pytest.approx(25.0)
    assert run.forward_passes == {"prefill": 20, "decode": 100}
    assert run.tokens_per_step == pytest.approx(400 / 120)


def test_models_without_engine_metrics_have_no_engine_view() -> None:
    assert engine_run({"nv_inference_count": 5.0}) is None


def test_step_timeline_follows_the_contract_and_is_cut_into_run_windows() -> None:
    steps = read_steps(PROFILE_DIR, "text_generation")
    assert len(steps) > 600 and steps == sorted(steps, key=lambda s: s.t)  # the torn last line is skipped
    assert {s.phase for s in steps} == {"prefill", "mixed", "decode"}
    assert steps[0].instance == "0"
    busy = step_stats(window(steps, T0 + 0.2, T0 + 0.9))
    assert busy is not None
    assert busy.decode_rows == 16 and busy.steps_by_phase == {"decode": busy.steps}
    assert busy.decode_step_ms == pytest.approx(4.31, abs=0.05)
    assert busy.decode_gap_share == pytest.approx(0.115 / 4.31, abs=0.005)
    chunked = step_stats(window(steps, T0 + 0.99, T0 + 1.1))
    assert chunked is not None and chunked.steps_by_phase["mixed"] == 4 and chunked.prefill_ms > 7
    # The idle second before the 4-stream run is not "time between decode forwards".
    later = step_stats(window(steps, T0 + 2.0, T0 + 3.5))
    assert later is not None and later.decode_gap_ms == pytest.approx(0.07, abs=1e-3)
    assert step_stats(window(steps, T0 + 10, T0 + 11)) is None
    assert read_steps(PROFILE_DIR, "no_such_model") == []


def test_process_memory_of_a_tree_with_shared_memory_and_a_listening_socket() -> None:
    region = shared_memory.SharedMemory(name=f"ds_perf_test_{uuid.uuid4().hex[:8]}", create=True, size=4096)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    listener = socket.socket()
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        assert listening_pid(listener.getsockname()[1]) == os.getpid()
        assert child.pid in descendants(os.getpid())
        mine = process_memory(os.getpid())
        assert mine is not None and mine.rss_bytes > 10 * 1024 * 1024 and mine.fds > 3
        assert region.name in mine.shm_regions
        assert role_of(child.pid).startswith("python")
        with RssSampler(os.getpid(), interval_s=0.05) as sampler:
            import time

            time.sleep(0.3)
        assert len(sampler.samples) >= 3
        assert {p.pid for p in sampler.latest().processes} >= {os.getpid(), child.pid}
        assert sample(os.getpid()).total_rss_bytes > mine.rss_bytes
    finally:
        listener.close()
        child.kill()
        child.wait()
        region.close()
        region.unlink()
    assert process_memory(child.pid) is None
