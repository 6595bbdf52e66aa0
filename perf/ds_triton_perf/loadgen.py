"""The project's asyncio load generator: closed-loop concurrency or open-loop arrivals.

Open loop sends each request at its *intended* time (constant or Poisson
gaps) whether or not earlier ones have finished, and measures latency from
that intended time: when the server (or this generator) falls behind, the
wait shows up as latency instead of silently lowering the offered load
("coordinated omission"). In-flight requests are capped by a semaphore so
memory and task count stay bounded at any rate; a request that waits for a
slot still has its latency counted from its intended time.

Closed loop runs ``concurrency`` workers, each sending its next request as
soon as the previous one returns (latency from the actual send).
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from ds_triton_perf.arrivals import Distribution, arrival_offsets, scheduled_offsets
from ds_triton_perf.histogram import Histogram
from ds_triton_perf.outcome import Outcome, RequestFn
from ds_triton_perf.progress import Progress
from ds_triton_perf.recorder import Recorder, Sample, SecondBin

Mode = Literal["closed", "open"]


@dataclass(frozen=True)
class LoadSpec:
    """One load level.

    Attributes:
        mode: ``closed`` (fixed concurrency) or ``open`` (fixed arrival rate).
        concurrency: Workers in closed loop.
        rate: Requests per second in open loop.
        distribution: Open-loop gaps: ``poisson`` or ``constant``.
        duration_s: Length of the measurement window.
        warmup_s: Load sent before the window and not recorded.
        max_in_flight: Cap on concurrent requests in open loop (bounded memory).
        request_timeout_s: A request slower than this counts as a ``Timeout`` error.
        drain_timeout_s: Open loop: how long to wait for stragglers after the last send;
            still-running requests then count as ``Unfinished`` (bounds an overloaded run).
        seed: Seed for Poisson arrivals and the sample reservoir.
        phases: Open loop with a changing rate: ``(duration_s, rate)`` per phase, in order.
            The window is their total (``duration_s`` and ``rate`` are then ignored);
            the warm-up runs at the first phase's rate.
        keep_bins: Keep per-second statistics (``LoadResult.bins``).
    """

    mode: Mode
    concurrency: int = 1
    rate: float = 0.0
    distribution: Distribution = "poisson"
    duration_s: float = 10.0
    warmup_s: float = 1.0
    max_in_flight: int = 256
    request_timeout_s: float = 30.0
    drain_timeout_s: float = 10.0
    seed: int = 0
    phases: tuple[tuple[float, float], ...] = ()
    keep_bins: bool = False

    def validate(self) -> None:
        if self.mode not in ("closed", "open"):
            raise ValueError(f"mode must be 'closed' or 'open', got {self.mode!r}")
        if self.mode == "closed" and self.concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {self.concurrency}")
        if self.phases and (self.mode != "open" or any(d <= 0 or r <= 0 for d, r in self.phases)):
            raise ValueError(f"phases need open loop and positive durations and rates: {self.phases}")
        if self.mode == "open" and self.rate <= 0 and not self.phases:
            raise ValueError(f"rate must be > 0 for open loop, got {self.rate}")
        if self.duration_s <= 0 or self.warmup_s < 0 or self.max_in_flight < 1:
            raise ValueError("duration_s must be > 0, warmup_s >= 0 and max_in_flight >= 1")

    @property
    def level(self) -> float:
        """The swept value: concurrency (closed) or rate (open)."""
        return float(self.concurrency if self.mode == "closed" else self.rate)

    @property
    def window_s(self) -> float:
        """Length of the measurement window."""
        return sum(d for d, _ in self.phases) if self.phases else self.duration_s


@dataclass
class LoadResult:
    """What one run measured; ``to_row`` flattens it for CSV."""

    label: str
    spec: LoadSpec
    duration_s: float
    completed: int
    throughput_rps: float
    items_per_s: float
    tokens_per_s: float
    latency_ms: dict[str, float]
    ttft_ms: dict[str, float]
    itl_ms: dict[str, float]
    errors: dict[str, int]
    loadgen_cpu_cores: float
    latency_histogram: Histogram = field(repr=False)
    ttft_histogram: Histogram = field(default_factory=Histogram, repr=False)
    itl_histogram: Histogram = field(default_factory=Histogram, repr=False)
    samples: list[Sample] = field(default_factory=list, repr=False)
    timeline: list[int] = field(default_factory=list, repr=False)
    bins: list[SecondBin] = field(default_factory=list, repr=False)
    window_unix: tuple[float, float] = (0.0, 0.0)

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items()
               if k not in ("latency_histogram", "ttft_histogram", "itl_histogram", "samples", "bins")}
        out["spec"] = asdict(self.spec)
        out["latency_buckets_us"] = [list(b) for b in self.latency_histogram.buckets()]
        return out

    def to_row(self) -> dict[str, Any]:
        row: dict[str, Any] = {
            "label": self.label, "mode": self.spec.mode, "concurrency": self.spec.concurrency,
            "rate": self.spec.rate, "distribution": self.spec.distribution,
            "duration_s": round(self.duration_s, 3), "completed": self.completed,
            "errors": self.error_count, "throughput_rps": round(self.throughput_rps, 3),
            "items_per_s": round(self.items_per_s, 3), "tokens_per_s": round(self.tokens_per_s, 3),
            "loadgen_cpu_cores": round(self.loadgen_cpu_cores, 3),
        }
        for prefix, stats in (("latency", self.latency_ms), ("ttft", self.ttft_ms), ("itl", self.itl_ms)):
            row.update({f"{prefix}_{k}_ms": round(v, 3) for k, v in stats.items()})
        return row


async def run_load(request: RequestFn, spec: LoadSpec, label: str = "", progress: bool = False) -> LoadResult:
    """Drive ``request`` at ``spec``'s load and return what was measured."""
    spec.validate()
    start = time.perf_counter() + 0.05  # a moment to set up before the first intended send
    recorder = Recorder(start + spec.warmup_s, start + spec.warmup_s + spec.window_s, seed=spec.seed,
                        keep_bins=spec.keep_bins)
    bar = Progress(spec.warmup_s + spec.window_s, label or _describe(spec), enabled=progress)
    state = _RunState()
    cpu_before = _cpu_seconds()
    ticker = asyncio.create_task(_tick(bar, recorder, state, start))
    try:
        if spec.mode == "closed":
            await _closed_loop(request, spec, recorder, state, start)
        else:
            await _open_loop(request, spec, recorder, state, start)
    finally:
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker
        bar.close()
    wall = max(time.perf_counter() - start, 1e-9)
    result = _result(label, spec, recorder, (_cpu_seconds() - cpu_before) / wall)
    to_unix = time.time() - time.perf_counter()
    result.window_unix = (recorder.window_start + to_unix, recorder.window_end + to_unix)
    return result


@dataclass
class _RunState:
    in_flight: int = 0


async def _timed(request: RequestFn, timeout: float) -> Outcome:
    try:
        return await asyncio.wait_for(request(), timeout)
    except TimeoutError:
        return Outcome(items=0, error="Timeout")
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # every failure is data: counted by its type
        return Outcome(items=0, error=type(exc).__name__)


async def _closed_loop(request: RequestFn, spec: LoadSpec, recorder: Recorder, state: _RunState,
                       start: float) -> None:
    end = recorder.window_end

    async def worker() -> None:
        await asyncio.sleep(max(0.0, start - time.perf_counter()))
        while (sent := time.perf_counter()) < end:
            state.in_flight += 1
            outcome = await _timed(request, spec.request_timeout_s)
            state.in_flight -= 1
            recorder.record(sent, sent, time.perf_counter(), outcome)

    await asyncio.gather(*(worker() for _ in range(spec.concurrency)))


async def _open_loop(request: RequestFn, spec: LoadSpec, recorder: Recorder, state: _RunState,
                     start: float) -> None:
    slots = asyncio.Semaphore(spec.max_in_flight)
    tasks: set[asyncio.Task[None]] = set()
    total = spec.warmup_s + spec.window_s
    if spec.phases:
        warmup = ((spec.warmup_s, spec.phases[0][1]),) if spec.warmup_s > 0 else ()
        offsets = scheduled_offsets(warmup + spec.phases, spec.distribution, spec.seed)
    else:
        offsets = arrival_offsets(spec.rate, spec.distribution, spec.seed)

    async def one(intended: float) -> None:
        try:
            sent = time.perf_counter()
            outcome = await _timed(request, spec.request_timeout_s)
            recorder.record(intended, sent, time.perf_counter(), outcome)
        finally:
            state.in_flight -= 1
            slots.release()

    for offset in offsets:
        if offset >= total:
            break
        intended = start + offset
        delay = intended - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        await slots.acquire()  # at the cap we wait, but latency still counts from ``intended``
        state.in_flight += 1
        task = asyncio.create_task(one(intended))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        _, pending = await asyncio.wait(set(tasks), timeout=min(spec.request_timeout_s,
                                                                spec.drain_timeout_s))
        for task in pending:
            task.cancel()
        recorder.record_unfinished(len(pending))


async def _tick(bar: Progress, recorder: Recorder, state: _RunState, start: float) -> None:
    while True:
        await asyncio.sleep(0.5)
        bar.update(time.perf_counter() - start, recorder.completed, sum(recorder.errors.values()),
                   state.in_flight)


def _result(label: str, spec: LoadSpec, recorder: Recorder, cpu_cores: float) -> LoadResult:
    duration = recorder.window_end - recorder.window_start
    return LoadResult(
        label=label,
        spec=spec,
        duration_s=duration,
        completed=recorder.completed,
        throughput_rps=recorder.completed_in_window / duration,
        items_per_s=recorder.items_in_window / duration,
        tokens_per_s=recorder.tokens / duration,
        latency_ms=recorder.latency.summary_ms(),
        ttft_ms=recorder.ttft.summary_ms() if recorder.ttft.total else {},
        itl_ms=recorder.itl.summary_ms() if recorder.itl.total else {},
        errors=dict(recorder.errors),
        loadgen_cpu_cores=cpu_cores,
        latency_histogram=recorder.latency,
        ttft_histogram=recorder.ttft,
        itl_histogram=recorder.itl,
        samples=recorder.samples,
        timeline=recorder.timeline,
        bins=recorder.bins,
    )


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _describe(spec: LoadSpec) -> str:
    if spec.mode == "closed":
        return f"closed c={spec.concurrency}"
    if spec.phases:
        return "open " + " → ".join(f"{r:g}/s" for _, r in spec.phases)
    return f"open {spec.distribution} {spec.rate:g}/s"
