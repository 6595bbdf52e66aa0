"""The load generator against fakes with a known latency distribution.

A tiny aiohttp server on loopback sleeps a known, evenly spread latency per
request; at a low open-loop rate there is no queueing, so the measured
percentiles must match the injected ones (plus a small, one-sided overhead).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from ds_triton_perf.loadgen import LoadSpec, run_load
from ds_triton_perf.outcome import Outcome

# Latencies 10..49 ms, each equally often: the exact percentiles are known.
INJECTED_MS = list(range(10, 50))
# Loopback HTTP + event-loop wake-ups on a quiet machine; never negative. On a busy machine the
# event loop itself stalls, so the percentile test adds the stalls it observed (see ``_LoopLag``).
OVERHEAD_MS = 12.0


class _LoopLag:
    """How late this event loop wakes up (ms) while a test runs: the machine's share of a latency."""

    def __init__(self) -> None:
        self.worst_ms = 0.0
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> _LoopLag:
        self._task = asyncio.create_task(self._watch())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(0.002)
            self.worst_ms = max(self.worst_ms, 1000.0 * (loop.time() - before - 0.002))


def exact_percentile(percent: float) -> float:
    ordered = sorted(INJECTED_MS)
    index = max(0, -(-len(ordered) * percent // 100) - 1)  # nearest rank
    return float(ordered[int(index)])


@pytest.fixture
async def fake_server() -> AsyncIterator[str]:
    cycle = itertools.cycle(INJECTED_MS)

    async def handle(_: web.Request) -> web.Response:
        await asyncio.sleep(next(cycle) / 1000.0)
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/infer", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/infer"
    finally:
        await runner.cleanup()


async def test_open_loop_percentiles_match_injected_distribution(fake_server: str) -> None:
    async with aiohttp.ClientSession() as session:

        async def request() -> Outcome:
            async with session.post(fake_server, json={}) as response:
                response.raise_for_status()
                await response.read()
            return Outcome()

        spec = LoadSpec(mode="open", rate=40, distribution="constant", duration_s=4, warmup_s=0.5)
        async with _LoopLag() as lag:
            result = await run_load(request, spec)
    assert result.errors == {}
    assert result.completed == pytest.approx(160, abs=2)
    # Never below what the server took; above it by the overhead and whatever stalls the machine caused.
    margin = OVERHEAD_MS + 2 * lag.worst_ms
    for percent in (50, 90, 99):
        measured = result.latency_ms[f"p{percent}"]
        expected = exact_percentile(percent)
        assert expected - 0.5 <= measured <= expected + margin, (percent, measured, expected, lag.worst_ms)
    assert 49 <= result.latency_ms["max"] <= 49 + 3 * margin
    # Completions are counted when they end: a stall at the window's end pushes some past it.
    assert result.throughput_rps == pytest.approx(40, abs=4 + 40 * margin / 1000), lag.worst_ms


async def test_open_loop_counts_a_server_stall_from_intended_send_times() -> None:
    """A 0.5 s stall delays every request intended during it: no coordinated omission."""
    gate = asyncio.Event()
    gate.set()

    async def request() -> Outcome:
        await gate.wait()
        return Outcome()

    async def stall() -> None:
        await asyncio.sleep(1.0)
        gate.clear()
        await asyncio.sleep(0.5)
        gate.set()

    staller = asyncio.create_task(stall())
    async with _LoopLag() as lag:
        result = await run_load(request, LoadSpec(mode="open", rate=100, distribution="constant",
                                                  duration_s=2.0, warmup_s=0.0))
    await staller
    # 50 of ~200 requests were intended during the stall, waiting 0..500 ms each.
    assert result.latency_ms["p90"] > 150
    assert result.latency_ms["max"] > 400
    assert result.latency_ms["p50"] < 20 + 2 * lag.worst_ms


async def test_closed_loop_throughput_follows_concurrency() -> None:
    async def request() -> Outcome:
        await asyncio.sleep(0.02)
        return Outcome(items=3)

    result = await run_load(request, LoadSpec(mode="closed", concurrency=4, duration_s=1.5,
                                              warmup_s=0.2))
    # 4 workers x 50/s; allow for timer overhead on a shared machine.
    assert 120 <= result.throughput_rps <= 205
    assert result.items_per_s == pytest.approx(3 * result.throughput_rps)
    assert result.latency_ms["p50"] >= 20


async def test_in_flight_is_bounded_and_unfinished_requests_are_errors() -> None:
    active = 0
    peak = 0

    async def request() -> Outcome:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        try:
            await asyncio.sleep(0.2)
        finally:
            active -= 1
        return Outcome()

    spec = LoadSpec(mode="open", rate=100, distribution="constant", duration_s=0.3, warmup_s=0,
                    max_in_flight=8, request_timeout_s=5)
    result = await run_load(request, spec)
    assert peak <= 8
    # Requests waited for a slot; their latency counts from when they were due (service: 200 ms).
    assert result.latency_ms["max"] > 300


async def test_overloaded_open_loop_is_bounded_by_the_drain_timeout() -> None:
    async def request() -> Outcome:
        await asyncio.sleep(10)
        return Outcome()

    spec = LoadSpec(mode="open", rate=50, duration_s=0.2, warmup_s=0, drain_timeout_s=0.3)
    result = await run_load(request, spec)
    assert result.completed == 0
    assert result.errors["Unfinished"] > 0


async def test_errors_are_counted_by_type_and_streams_give_ttft_and_itl() -> None:
    calls = itertools.count()

    async def request() -> Outcome:
        n = next(calls)
        if n % 5 == 0:
            raise ConnectionResetError("boom")
        if n % 5 == 1:
            return Outcome(items=0, error="InvalidArgument")
        loop = asyncio.get_running_loop()
        times = []
        await asyncio.sleep(0.03)  # time to first token
        for _ in range(4):
            times.append(loop.time())
            await asyncio.sleep(0.01)
        return Outcome(items=4, token_times=_to_perf_counter(times, loop.time()))

    async with _LoopLag() as lag:
        result = await run_load(request, LoadSpec(mode="closed", concurrency=2, duration_s=1.0,
                                                  warmup_s=0))
    assert set(result.errors) == {"ConnectionResetError", "InvalidArgument"}
    assert result.ttft_ms["p50"] >= 30
    assert 10 <= result.itl_ms["p50"] <= 10 + OVERHEAD_MS + 2 * lag.worst_ms
    assert result.tokens_per_s > 0


async def test_request_timeout_is_an_error() -> None:
    async def request() -> Outcome:
        await asyncio.sleep(1)
        return Outcome()

    result = await run_load(request, LoadSpec(mode="closed", concurrency=1, duration_s=1.0,
                                              warmup_s=0, request_timeout_s=0.1))
    assert result.errors.get("Timeout", 0) >= 2


def _to_perf_counter(loop_times: list[float], loop_now: float) -> list[float]:
    import time

    now = time.perf_counter()
    return [now - (loop_now - t) for t in loop_times]


def test_invalid_specs_are_rejected() -> None:
    with pytest.raises(ValueError, match="rate"):
        LoadSpec(mode="open", rate=0).validate()
    with pytest.raises(ValueError, match="concurrency"):
        LoadSpec(mode="closed", concurrency=0).validate()


async def test_a_rate_schedule_changes_the_offered_load_second_by_second() -> None:
    async def request() -> Outcome:
        await asyncio.sleep(0.005)
        return Outcome(items=2)

    spec = LoadSpec(mode="open", phases=((1.0, 20.0), (1.0, 80.0), (1.0, 20.0)), distribution="constant",
                    warmup_s=0.2, keep_bins=True)
    result = await run_load(request, spec)
    offered = [b.ok + sum(b.errors.values()) for b in result.bins[:3]]
    assert offered == [20, 80, 20]
    assert result.duration_s == pytest.approx(3.0)
    assert sum(b.items_done for b in result.bins) == pytest.approx(2 * 120, abs=4)
    assert all(b.latency.total == b.ok for b in result.bins)
    start, end = result.window_unix
    assert end - start == pytest.approx(3.0)


def test_schedules_need_open_loop_and_positive_phases() -> None:
    with pytest.raises(ValueError, match="phases"):
        LoadSpec(mode="closed", phases=((1.0, 5.0),)).validate()
    with pytest.raises(ValueError, match="phases"):
        LoadSpec(mode="open", phases=((1.0, 0.0),)).validate()
