"""Queue-driven embedding against the direct client at the same concurrency (issue 17).

Both paths embed the same jobs (``jobs`` × ``texts_per_job`` texts of the
scenario's mix, one request per job) on the bench's own server:

* **direct**: one ``AsyncClient`` set up as a worker sets up its own, with
  ``concurrency`` requests in flight;
* **queue**: a local ``nats-server`` (JetStream, file storage) and ``workers``
  ``ds-triton-client worker`` processes holding ``concurrency / workers`` jobs
  each; every job is submitted at once and results are read back from the
  result stream as a collector reads them.

Throughput is texts per second from the first request (or submit) to the last
result. The direct path runs before and after the queue, and the queue is
compared with their mean, so that drift of a shared machine falls on both
sides. Target: queue ÷ direct ≥ ``throughput_ratio_bar`` (0.9).

Then latency without a backlog: jobs arrive open-loop (Poisson) at
``latency_load`` of the queue's measured job rate for ``latency_s``; each job's
submit→result time (``submitted_at`` to the collector reading its result) gives
p50/p99, beside the direct client's request latency at the same rate.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib.util
import json
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ds_triton_perf.arrivals import arrival_offsets
from ds_triton_perf.histogram import Histogram
from ds_triton_perf.kinds import Kind, KindContext, Row, target
from ds_triton_perf.report.document import Section, Table, anchor
from ds_triton_perf.results import BenchResults
from ds_triton_perf.scenarios import ModelScenarios


@dataclass(frozen=True)
class QueueScenario:
    """See the module docstring; ``quick_*`` apply with ``--quick``."""

    name: str = "queue"
    texts: str = ""
    jobs: int = 2000
    quick_jobs: int = 200
    texts_per_job: int = 1
    concurrency: int = 16
    workers: int = 2
    latency_load: float = 0.5
    latency_s: float = 10.0
    quick_latency_s: float = 3.0
    request_timeout_s: float = 60.0
    phase_timeout_s: float = 600.0
    throughput_ratio_bar: float = 0.9


@dataclass
class Phase:
    """One measured pass: when each job was sent and when its result came back (perf_counter s)."""

    texts: int = 0
    started: float = 0.0
    ended: float = 0.0
    latency: Histogram = dataclasses.field(default_factory=Histogram)
    done: int = 0
    errors: dict[str, int] = dataclasses.field(default_factory=dict)
    missing: int = 0

    @property
    def texts_per_s(self) -> float:
        return self.texts / (self.ended - self.started) if self.ended > self.started else 0.0

    def fail(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1

    def summary(self) -> dict[str, Any]:
        return {"texts": self.texts, "jobs_done": self.done, "seconds": round(self.ended - self.started, 3),
                "texts_per_s": round(self.texts_per_s, 2), "p50_ms": _ms(self.latency, 50),
                "p99_ms": _ms(self.latency, 99), "errors": dict(self.errors), "missing": self.missing}


def run(ctx: KindContext, scenarios: ModelScenarios, config: QueueScenario) -> None:
    model = scenarios.model
    missing = _missing_tools()
    if missing:
        ctx.results.notes.append(f"{model} queue {config.name}: skipped ({missing})")
        return
    from ds_triton_perf.texts import text_mix

    count = config.quick_jobs if ctx.quick else config.jobs
    weights = scenarios.text_weights(config.texts or next(iter(scenarios.texts)))
    texts = text_mix(weights, count=count * config.texts_per_job, seed=17)
    batches = [texts[i:i + config.texts_per_job] for i in range(0, len(texts), config.texts_per_job)]
    url = f"grpc://{ctx.server.grpc}"
    per_worker = max(1, config.concurrency // config.workers)
    concurrency = per_worker * config.workers
    folder = ctx.out_dir / f"queue-{config.name}"
    ctx.log.step(f"{model}: queue {config.name}: {len(batches)} jobs of {config.texts_per_job} text(s), "
                 f"{config.workers} workers × {per_worker} in flight vs the client at {concurrency}")
    with _nats(folder) as nats_url, _workers(nats_url, url, config, per_worker, folder) as stream:
        direct = [asyncio.run(_direct_burst(url, model, batches, concurrency, config))]
        queued = asyncio.run(_queue_burst(nats_url, stream, model, batches, config))
        direct.append(asyncio.run(_direct_burst(url, model, batches, concurrency, config)))
        jobs_per_s = queued.done / (queued.ended - queued.started) if queued.ended > queued.started else 0.0
        rate = config.latency_load * jobs_per_s
        seconds = config.quick_latency_s if ctx.quick else config.latency_s
        queue_open = direct_open = None
        if rate > 0:
            ctx.log.detail(f"latency: {rate:.1f} jobs/s for {seconds:g} s, queue then direct")
            queue_open = asyncio.run(_queue_open(nats_url, stream, model, batches, rate, seconds, config))
            direct_open = asyncio.run(_direct_open(url, model, batches, rate, seconds, config))
    row = analyse(direct, queued, queue_open, direct_open)
    row.update(scenario=config.name, jobs=len(batches), texts_per_job=config.texts_per_job,
               concurrency=concurrency, workers=config.workers, latency_rate_jobs_per_s=round(rate, 2),
               latency_load=config.latency_load, latency_s=seconds, ratio_bar=config.throughput_ratio_bar)
    ctx.add_row(KIND.key, model, row)
    ctx.log.detail(f"queue {row['queue_texts_per_s']:.1f} vs direct {row['direct_texts_per_s']:.1f} texts/s "
                   f"({_fmt(row['throughput_ratio'])}×); submit→result p50 {_fmt(row['queue_p50_ms'])} ms, "
                   f"p99 {_fmt(row['queue_p99_ms'])} ms")


def analyse(direct: Sequence[Phase], queued: Phase, queue_open: Phase | None,
            direct_open: Phase | None) -> Row:
    """The queue row: throughput of each pass, the ratio to the mean direct pass, open-loop latency."""
    direct_rate = sum(p.texts_per_s for p in direct) / len(direct) if direct else 0.0
    complete = not queued.missing and not queued.errors and all(not p.errors for p in direct)
    ratio = queued.texts_per_s / direct_rate if direct_rate > 0 and complete else None
    return {
        "direct_texts_per_s": round(direct_rate, 2),
        "direct_passes_texts_per_s": [round(p.texts_per_s, 2) for p in direct],
        "queue_texts_per_s": round(queued.texts_per_s, 2),
        "throughput_ratio": None if ratio is None else round(ratio, 3),
        "queue_burst": queued.summary(),
        "direct_bursts": [p.summary() for p in direct],
        "queue_p50_ms": _ms(queue_open.latency, 50) if queue_open else None,
        "queue_p99_ms": _ms(queue_open.latency, 99) if queue_open else None,
        "direct_p50_ms": _ms(direct_open.latency, 50) if direct_open else None,
        "direct_p99_ms": _ms(direct_open.latency, 99) if direct_open else None,
        "queue_open": queue_open.summary() if queue_open else None,
        "direct_open": direct_open.summary() if direct_open else None,
    }


# --- the two paths --------------------------------------------------------------------------


def _client(url: str, concurrency: int, config: QueueScenario) -> Any:
    """The client a worker makes for itself (``cmd_worker``): the same defaults and concurrency cap."""
    from ds_triton_client.aclient import AsyncClient

    return AsyncClient(url, max_concurrency=max(8, concurrency), timeout=config.request_timeout_s)


async def _direct_burst(url: str, model: str, batches: Sequence[list[str]], concurrency: int,
                        config: QueueScenario) -> Phase:
    from ds_triton_client.concurrency import gather_bounded

    phase = Phase(texts=sum(map(len, batches)))
    async with _client(url, concurrency, config) as client:
        await client.embed(batches[0], model=model)  # connect and warm before the clock starts

        async def one(batch: list[str]) -> None:
            sent = time.perf_counter()
            try:
                await client.embed(batch, model=model)
            except Exception as exc:  # counted: a failed pass has no ratio
                phase.fail(type(exc).__name__)
                return
            phase.latency.record_seconds(time.perf_counter() - sent)
            phase.done += 1

        phase.started = time.perf_counter()
        await gather_bounded(one, list(batches), concurrency)
        phase.ended = time.perf_counter()
    return phase


async def _direct_open(url: str, model: str, batches: Sequence[list[str]], rate: float, seconds: float,
                       config: QueueScenario) -> Phase:
    phase = Phase()
    async with _client(url, 64, config) as client:
        await client.embed(batches[0], model=model)

        async def one(batch: list[str]) -> None:
            sent = time.perf_counter()
            try:
                await client.embed(batch, model=model)
            except Exception as exc:
                phase.fail(type(exc).__name__)
                return
            phase.latency.record_seconds(time.perf_counter() - sent)
            phase.done += 1

        tasks = await _paced(lambda batch: asyncio.create_task(one(batch)), batches, rate, seconds, phase)
        await asyncio.gather(*tasks)
        phase.ended = time.perf_counter()
    return phase


async def _queue_burst(nats_url: str, stream: str, model: str, batches: Sequence[list[str]],
                       config: QueueScenario) -> Phase:
    from ds_triton_client.queue import NatsBroker, QueueNames, submit_jobs

    names = QueueNames(stream)
    jobs = _jobs(names, model, batches)
    phase = Phase(texts=sum(map(len, batches)))
    broker = await NatsBroker.connect(nats_url, names)
    try:
        reader = asyncio.create_task(_read_results(broker, names, jobs, phase, config.phase_timeout_s))
        phase.started = time.perf_counter()
        await submit_jobs(broker, jobs, concurrency=64)
        await reader
    finally:
        await broker.close()
    return phase


async def _queue_open(nats_url: str, stream: str, model: str, batches: Sequence[list[str]], rate: float,
                      seconds: float, config: QueueScenario) -> Phase:
    from ds_triton_client.queue import NatsBroker, QueueNames

    names = QueueNames(stream)
    jobs = {job.id: job for job in _jobs(names, model, batches)}
    order = list(jobs.values())
    phase = Phase()
    broker = await NatsBroker.connect(nats_url, names)
    sent: list[Any] = []

    async def publish(index: int) -> None:
        job = dataclasses.replace(order[index], submitted_at=time.time())
        try:
            await broker.publish(names.job_subject("embed"), job.encode(), job.id)
        except Exception as exc:
            phase.fail(f"submit {type(exc).__name__}")

    try:
        indices = list(range(len(order)))
        tasks = await _paced(lambda i: asyncio.create_task(publish(i)), indices, rate, seconds, phase)
        await asyncio.gather(*tasks)
        sent = order[:len(tasks)]
        await _read_results(broker, names, sent, phase, config.phase_timeout_s)
    finally:
        await broker.close()
    return phase


def _jobs(names: Any, model: str, batches: Sequence[list[str]]) -> list[Any]:
    from ds_triton_client.queue import Job

    run = uuid.uuid4().hex[:12]
    reply = names.result_subject(run)
    return [Job(id=f"{run}:{i}", task="embed", inputs=tuple(batch), model=model, reply_to=reply)
            for i, batch in enumerate(batches)]


async def _read_results(broker: Any, names: Any, jobs: Sequence[Any], phase: Phase, timeout_s: float) -> None:
    """Read the jobs' result subject until each job has one result (the first one counts)."""
    if not jobs:
        return
    waiting = {job.id for job in jobs}
    deadline = time.monotonic() + timeout_s
    replay = broker.replay(jobs[0].reply_to)
    try:
        async for batch in replay:
            now_unix, now = time.time(), time.perf_counter()
            for payload in batch:
                result = json.loads(payload)
                if result["id"] not in waiting:
                    continue  # a duplicate (redelivery): collectors keep the first
                waiting.discard(result["id"])
                if not result["ok"]:
                    phase.fail(result["error"]["type"])
                    continue
                phase.done += 1
                timings = result.get("timings") or {}
                if timings.get("queued_s") is not None and timings.get("started_at") is not None:
                    submitted = timings["started_at"] - timings["queued_s"]
                    phase.latency.record_seconds(max(0.0, now_unix - submitted))
                phase.ended = now
            if not waiting or time.monotonic() > deadline:
                break
    finally:
        await replay.aclose()
    phase.missing = len(waiting)


async def _paced(start: Callable[[Any], Awaitable[Any]], items: Sequence[Any], rate: float, seconds: float,
                 phase: Phase) -> list[Any]:
    """Start one item per Poisson arrival at ``rate`` for ``seconds`` (cycling through ``items``)."""
    tasks = []
    phase.started = begin = time.perf_counter()
    for index, offset in enumerate(arrival_offsets(rate, "poisson", seed=23)):
        if offset >= seconds or index >= len(items):
            break
        delay = begin + offset - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(start(items[index]))
    return tasks


# --- the servers ----------------------------------------------------------------------------


def _missing_tools() -> str:
    if shutil.which("nats-server") is None:
        return "nats-server is not installed"
    for module in ("nats", "prometheus_client"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install 'ds-triton-client[nats]')"
    return ""


@contextlib.contextmanager
def _nats(folder: Path) -> Iterator[str]:
    from ds_triton_client.queue.local_nats import LocalNatsServer

    server = LocalNatsServer(folder / "nats").start()
    try:
        yield server.url
    finally:
        server.stop()


@contextlib.contextmanager
def _workers(nats_url: str, triton_url: str, config: QueueScenario, per_worker: int,
             folder: Path) -> Iterator[str]:
    """``config.workers`` worker processes on a fresh queue; yields the queue's name once all are ready."""
    stream = f"bench{uuid.uuid4().hex[:8]}"
    folder.mkdir(parents=True, exist_ok=True)
    processes: list[tuple[subprocess.Popen[bytes], Path]] = []
    try:
        for index in range(config.workers):
            log = folder / f"worker-{index}.log"
            command = [sys.executable, "-m", "ds_triton_client.cli", "--url", triton_url, "--timeout",
                       str(config.request_timeout_s), "worker", "--nats", nats_url, "--stream", stream,
                       "--max-in-flight", str(per_worker)]
            with open(log, "wb") as out:
                processes.append((subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT), log))
        deadline = time.monotonic() + 120
        for process, log in processes:
            while " ready: " not in log.read_text(errors="replace"):
                if process.poll() is not None or time.monotonic() > deadline:
                    tail = log.read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"queue worker did not start:\n{tail}")
                time.sleep(0.1)
        yield stream
    finally:
        for process, _ in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process, _ in processes:
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# --- verdicts and report --------------------------------------------------------------------


def verdicts(results: BenchResults, rows: list[Row]) -> None:
    for row in rows:
        model = row["model"]
        name = f"{model} queue" + ("" if row["scenario"] == "queue" else f" ({row['scenario']})")
        burst = row["queue_burst"]
        problems = [f"{burst['missing']} job(s) without a result"] if burst["missing"] else []
        problems += [f"{n} {kind}" for kind, n in sorted(burst["errors"].items())]
        for index, direct in enumerate(row["direct_bursts"]):
            problems += [f"direct pass {index + 1}: {n} {kind}"
                         for kind, n in sorted(direct["errors"].items())]
        detail = (f"{row['queue_texts_per_s']:.1f} vs {row['direct_texts_per_s']:.1f} texts/s "
                  f"({row['workers']} workers, {row['concurrency']} in flight in all)")
        target(results, model, f"{name}: embed throughput through NATS workers ÷ direct client at the same "
               f"concurrency", row["ratio_bar"], row["throughput_ratio"],
               detail="; ".join(problems) if problems else detail)


def section(model: str, rows: list[Row], results: BenchResults) -> Section | None:
    if not rows:
        return None
    throughput = Table(["scenario", "jobs × texts", "workers × in flight", "direct texts/s (before, after)",
                        "queue texts/s", "queue ÷ direct", "errors / missing"],
                       [[r["scenario"], f"{r['jobs']} × {r['texts_per_job']}",
                         f"{r['workers']} × {r['concurrency'] // max(1, r['workers'])}",
                         f"{r['direct_texts_per_s']} ({', '.join(map(str, r['direct_passes_texts_per_s']))})",
                         r["queue_texts_per_s"], r["throughput_ratio"],
                         f"{sum(r['queue_burst']['errors'].values())} / {r['queue_burst']['missing']}"]
                        for r in rows], "Throughput: every job submitted at once")
    latency = Table(["scenario", "jobs/s (Poisson)", "seconds", "submit→result p50 ms", "p99 ms",
                     "direct request p50 ms", "p99 ms", "jobs (queue / direct)"],
                    [[r["scenario"], r["latency_rate_jobs_per_s"], r["latency_s"], r["queue_p50_ms"],
                      r["queue_p99_ms"], r["direct_p50_ms"], r["direct_p99_ms"],
                      f"{_done(r['queue_open'])} / {_done(r['direct_open'])}"]
                     for r in rows],
                    f"Latency: Poisson arrivals at {rows[0]['latency_load']:g}× the queue's job rate")
    return Section(anchor(model, "queue-section"), "Queue-driven inference (NATS JetStream workers)",
                   "The same embed jobs through `ds-triton-client worker` processes on a local nats-server "
                   "(JetStream, file storage) and through the client directly, on the same server at the "
                   "same concurrency. Direct runs before and after the queue; the ratio uses their mean. "
                   "Submit→result is from a job's submitted_at to the collector reading its result.",
                   [throughput, latency])


def _ms(histogram: Histogram, percent: float) -> float | None:
    return round(histogram.percentile(percent) / 1000.0, 2) if histogram.total else None


def _done(phase: dict[str, Any] | None) -> int | None:
    return phase["jobs_done"] if phase else None


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.3g}"


KIND = Kind(key="queue", title="Queue workers", config=QueueScenario, run=run, verdicts=verdicts,
            section=section, tasks=("embedding",))
