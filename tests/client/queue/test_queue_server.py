"""Queue-driven inference end to end: real nats-server (JetStream, file storage), real Triton
replicas, ``ds-triton-client worker`` processes, and submit/collect; faults injected mid-run.

Every run is checked row by row against a direct ``embed`` of the same texts: the collected
output has each row exactly once (collect keeps one result per job id), and nothing is lost.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ds_triton_client import Client
from ds_triton_client.jobs.runner import BatchSummary
from ds_triton_client.queue import Job, JobResult, NatsBroker, QueueNames, RunSpec, collect, submit_file
from ds_triton_client.queue.broker import Backlog
from ds_triton_client.queue.collector import CollectStats
from ds_triton_client.queue.local_nats import LocalNatsServer
from tests.client.conftest import EMBED_MODEL, Replica
from tests.client.queue.conftest import WorkerProcess, cli, ensure_running, write_texts

pytestmark = [pytest.mark.server, pytest.mark.slow]

DIM = 384


def texts_for(count: int, tag: str) -> list[str]:
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa"]
    return [f"{tag} {i}: " + " ".join(words[: 1 + i % len(words)]) for i in range(count)]


def direct_embed(replica: Replica, texts: list[str]) -> np.ndarray:
    with Client(replica.grpc_url, health_interval=0, max_concurrency=4) as client:
        return client.embed(texts, timeout=600)


def figure(test: str, **values: object) -> None:
    """The run's figures, printed for the README's delivery table (``pytest -rP`` shows them)."""
    print(f"[figure] {test}: " + ", ".join(f"{k}={v}" for k, v in values.items()))


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def succeeded(worker: WorkerProcess) -> float:
    return worker.metrics().get("ds_triton_queue_jobs_succeeded_total", 0.0)


async def submit(nats_url: str, stream: str, source: Path, spec: RunSpec) -> str:
    broker = await NatsBroker.connect(nats_url, QueueNames(stream))
    try:
        await broker.ensure_streams()
        return (await submit_file(broker, source, spec, progress=False)).run_id
    finally:
        await broker.close()


async def collect_all(nats_url: str, stream: str, source: Path, output: Path, spec: RunSpec,
                      timeout: float = 1200) -> tuple[BatchSummary, CollectStats]:  # fmt: skip
    broker = await NatsBroker.connect(nats_url, QueueNames(stream))
    try:
        return await collect(broker, source, output, spec, timeout_s=timeout, progress=False)
    finally:
        await broker.close()


async def read_subject(nats_url: str, stream: str, subject: str, quiet_s: float = 2.0) -> list[bytes]:
    """Everything stored on ``subject`` until nothing new came for ``quiet_s``."""
    broker = await NatsBroker.connect(nats_url, QueueNames(stream))
    messages: list[bytes] = []
    quiet = 0.0
    replay = broker.replay(subject)
    try:
        async for batch in replay:
            messages += batch
            quiet = 0.0 if batch else quiet + 1.0
            if quiet >= quiet_s:
                break
    finally:
        await replay.aclose()
        await broker.close()
    return messages


async def backlog(nats_url: str, stream: str) -> Backlog:
    broker = await NatsBroker.connect(nats_url, QueueNames(stream))
    try:
        return await broker.backlog()
    finally:
        await broker.close()


def settled_backlog(nats_url: str, stream: str, in_flight: int = 0, timeout: float = 15.0) -> Backlog:
    """The backlog once ``in_flight`` jobs wait for an acknowledgement (or as it is after ``timeout``)."""
    deadline = time.monotonic() + timeout
    lag = asyncio.run(backlog(nats_url, stream))
    while lag.in_flight != in_flight and time.monotonic() < deadline:
        time.sleep(0.2)
        lag = asyncio.run(backlog(nats_url, stream))
    return lag


def results_of(nats_url: str, stream: str, source: Path, spec: RunSpec) -> list[JobResult]:
    subject = QueueNames(stream).result_subject(spec.resolve_run_id(source))
    return [JobResult.parse(m) for m in asyncio.run(read_subject(nats_url, stream, subject))]


def inference_count(replica: Replica) -> int:
    with Client(replica.http_url, health_interval=0) as client:
        return int(client.stats(EMBED_MODEL)[replica.http_url]["model_stats"][0]["inference_count"])


@pytest.mark.timeout(1800)  # minutes on a quiet machine; the margin is for a shared, loaded one
def test_5000_jobs_through_two_workers_and_two_replicas_arrive_once_each_equal_to_direct_embed(
    nats_server: LocalNatsServer, stream: str, replica_a: Replica, replica_c: Replica,
    workers: list[WorkerProcess], tmp_path: Path,
) -> None:  # fmt: skip
    ensure_running(replica_c)
    texts = texts_for(5000, "five-thousand")
    source = write_texts(tmp_path / "texts.jsonl", texts)
    served_before = {r.http_url: inference_count(r) for r in (replica_a, replica_c)}
    urls = [replica_a.grpc_url, replica_c.grpc_url]
    workers += [WorkerProcess(nats_server.url, urls, stream, tmp_path, "--max-in-flight", "16")
                for _ in range(2)]  # fmt: skip
    for worker in workers:
        worker.wait_ready()

    broker_args = ["--nats", nats_server.url, "--stream", stream]
    submitted = subprocess.run(cli("--json", "submit", "embed", str(source), *broker_args),
                               capture_output=True, text=True, timeout=300)  # fmt: skip
    assert submitted.returncode == 0, submitted.stderr
    assert json.loads(submitted.stdout)["jobs"] == 5000
    output = tmp_path / "vectors.npy"
    command = cli("--json", "collect", "embed", str(source), str(output), *broker_args, "--timeout", "1200")
    collected = subprocess.run(command, capture_output=True, text=True, timeout=1300)
    assert collected.returncode == 0, collected.stderr
    report = json.loads(collected.stdout)
    assert (report["succeeded"], report["failed"]) == (5000, 0)

    # Each job ran to a result once: the two workers' successes add up to the jobs, both worked.
    done = [succeeded(w) for w in workers]
    assert sum(done) == 5000 and min(done) > 0, done
    # Both replicas served (the client balances); counted before the reference embed below.
    served = {r.http_url: inference_count(r) - served_before[r.http_url] for r in (replica_a, replica_c)}
    assert sum(served.values()) >= 5000 and min(served.values()) > 0, served
    vectors = np.load(output)
    assert vectors.shape == (5000, DIM) and not np.isnan(vectors).any()
    reference = direct_embed(replica_a, texts)
    np.testing.assert_allclose(vectors, reference, atol=1e-5)
    difference = float(np.abs(vectors - reference).max())
    figure("5000 jobs", rows=vectors.shape[0], duplicates_skipped=report["duplicate_results"],
           jobs_per_worker=done, inferences_per_replica=list(served.values()), max_abs_diff=difference)
    # The group's lag reads 0 from the broker.
    wait_for(lambda: workers[0].metrics().get("ds_triton_queue_consumer_pending", -1) == 0
             and workers[0].metrics().get("ds_triton_queue_consumer_ack_pending", -1) == 0,
             "the consumer lag gauges to read 0", 30)  # fmt: skip
    assert all(w.stop() == 0 for w in workers)


@pytest.mark.timeout(1200)
def test_sigkill_of_a_worker_mid_run_loses_nothing_and_collect_has_each_row_once(
    nats_server: LocalNatsServer, stream: str, replica_a: Replica, replica_c: Replica,
    workers: list[WorkerProcess], tmp_path: Path,
) -> None:  # fmt: skip
    ensure_running(replica_c)
    texts = texts_for(1500, "worker-kill")
    source = write_texts(tmp_path / "texts.jsonl", texts)
    urls = [replica_a.grpc_url, replica_c.grpc_url]
    # A short ack_wait: the killed worker's unacknowledged jobs go to the other one after 3 s.
    workers += [WorkerProcess(nats_server.url, urls, stream, tmp_path, "--max-in-flight", "16",
                              "--ack-wait", "3") for _ in range(2)]  # fmt: skip
    for worker in workers:
        worker.wait_ready()
    spec = RunSpec("embed")
    asyncio.run(submit(nats_server.url, stream, source, spec))
    victim, survivor = workers
    wait_for(lambda: succeeded(victim) >= 200, "the first worker to finish 200 jobs")
    held = victim.metrics()["ds_triton_queue_jobs_in_flight"]
    victim.signal(signal.SIGKILL)
    victim.process.wait()

    output = tmp_path / "vectors.npy"
    summary, stats = asyncio.run(collect_all(nats_server.url, stream, source, output, spec))
    assert (summary.succeeded, summary.failed) == (1500, 0)
    vectors = np.load(output)
    assert vectors.shape == (1500, DIM)
    np.testing.assert_allclose(vectors, direct_embed(replica_a, texts), atol=1e-5)
    results = results_of(nats_server.url, stream, source, spec)
    ids = [r.id for r in results]
    assert len(set(ids)) == 1500
    # The jobs the victim held when it died were delivered again, to the survivor.
    redelivered = sum(r.attempts > 1 for r in results)
    assert held > 0 and redelivered > 0, (held, stats)
    figure("worker SIGKILL", held_at_kill=held, results_after_redelivery=redelivered,
           results_on_stream=len(results), distinct_ids=len(set(ids)), rows=vectors.shape[0],
           duplicates_skipped=stats.duplicates)
    assert survivor.process.poll() is None


@pytest.mark.timeout(1200)
def test_invalid_jobs_are_dead_lettered_with_their_error_and_valid_jobs_beside_them_succeed(
    nats_server: LocalNatsServer, stream: str, replica_a: Replica, workers: list[WorkerProcess],
    tmp_path: Path,
) -> None:  # fmt: skip
    names = QueueNames(stream)
    texts = texts_for(200, "beside-invalid")
    source = write_texts(tmp_path / "texts.jsonl", texts)
    workers.append(WorkerProcess(nats_server.url, [replica_a.grpc_url], stream, tmp_path,
                                 "--max-attempts", "2", "--backoff", "0.2").wait_ready())  # fmt: skip
    reply = names.result_subject("invalid")
    def raw(job_id: str, **fields: object) -> bytes:
        return json.dumps({"id": job_id, "reply_to": reply, **fields}).encode()

    invalid: dict[str, bytes] = {
        "not-json": b"{this is not json",
        "bad-task": raw("bad-task", task="classify", inputs=["x"]),
        "no-inputs": raw("no-inputs", task="embed", inputs=[]),
        "blank-text": Job(id="blank-text", task="embed", inputs=("fine", "   "), reply_to=reply).encode(),
        "unknown-model": raw("unknown-model", task="embed", inputs=["x"], model="no_such_model"),
        "expired": raw("expired", task="embed", inputs=["x"], deadline=time.time() - 1),
        "bad-sampling": raw("bad-sampling", task="generate", inputs=["x"], parameters={"temperature": -1}),
        "unroutable": Job(id="unroutable", task="embed", inputs=("x",), reply_to="nowhere.at.all").encode(),
    }

    async def publish_all() -> None:
        broker = await NatsBroker.connect(nats_server.url, names)
        try:
            await broker.ensure_streams()
            for payload in invalid.values():
                await broker.publish(names.job_subject("embed"), payload)
            await submit_file(broker, source, RunSpec("embed"), progress=False)
        finally:
            await broker.close()

    asyncio.run(publish_all())
    output = tmp_path / "vectors.npy"
    summary, _ = asyncio.run(collect_all(nats_server.url, stream, source, output, RunSpec("embed")))
    assert (summary.succeeded, summary.failed) == (200, 0)
    np.testing.assert_allclose(np.load(output), direct_embed(replica_a, texts), atol=1e-5)

    def dead_letters() -> list[dict[str, Any]]:
        return [json.loads(m) for m in asyncio.run(read_subject(nats_server.url, stream, names.dead_subject))]

    wait_for(lambda: len(dead_letters()) >= len(invalid), "every invalid job in the dead letters", 120)
    letters = dead_letters()
    errors = {str(letter["id"] or "not-json"): letter["error"] for letter in letters}
    assert sorted(errors) == sorted(invalid)
    expected = {
        "not-json": ("InvalidJob", "not valid JSON"),
        "bad-task": ("InvalidJob", "'task'"),
        "no-inputs": ("InvalidJob", "'inputs'"),
        "blank-text": ("InvalidInputError", "empty"),
        "unknown-model": ("RetriesExhausted", "no_such_model"),
        "expired": ("DeadlineExpired", "passed"),
        "bad-sampling": ("InvalidInputError", "temperature"),
        "unroutable": ("InvalidJob", "nowhere.at.all"),
    }
    for job_id, (kind, words) in expected.items():
        assert errors[job_id]["type"] == kind and words in errors[job_id]["message"], (job_id, errors[job_id])
    assert next(x for x in letters if x["id"] is None)["raw"] == "{this is not json"
    # Jobs with an id and a reply subject were answered too, with the same error.
    answers = asyncio.run(read_subject(nats_server.url, stream, reply))
    answered = {r.id: r.error.type if r.error else None for r in map(JobResult.parse, answers)}
    assert answered == {k: v[0] for k, v in expected.items() if k not in ("not-json", "unroutable")}


@pytest.mark.timeout(1200)
def test_a_nats_server_killed_and_restarted_mid_run_loses_nothing(
    stream: str, replica_a: Replica, replica_c: Replica, workers: list[WorkerProcess], tmp_path: Path
) -> None:
    ensure_running(replica_c)
    server = LocalNatsServer(tmp_path / "nats").start()
    try:
        texts = texts_for(1500, "nats-restart")
        source = write_texts(tmp_path / "texts.jsonl", texts)
        urls = [replica_a.grpc_url, replica_c.grpc_url]
        workers += [WorkerProcess(server.url, urls, stream, tmp_path, "--max-in-flight", "16")
                    for _ in range(2)]  # fmt: skip
        for worker in workers:
            worker.wait_ready()
        spec = RunSpec("embed")
        asyncio.run(submit(server.url, stream, source, spec))
        output = tmp_path / "vectors.npy"
        collector = subprocess.Popen(cli("--json", "collect", "embed", str(source), str(output), "--nats",
                                         server.url, "--stream", stream, "--timeout", "1200"),
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
        wait_for(lambda: sum(succeeded(w) for w in workers) >= 300, "300 jobs done before the restart")
        done_at_kill = sum(succeeded(w) for w in workers)
        killed_at = time.monotonic()
        server.kill()  # SIGKILL: no clean shutdown of JetStream
        time.sleep(2)
        server.start()
        down_s = time.monotonic() - killed_at
        out, err = collector.communicate(timeout=1300)
        assert collector.returncode == 0, err[-3000:]
        report = json.loads(out)
        assert report["succeeded"] == 1500
        figure("nats-server SIGKILL", done_before_kill=done_at_kill, down_s=round(down_s, 1), rows=1500,
               duplicates_skipped=report["duplicate_results"])
        np.testing.assert_allclose(np.load(output), direct_embed(replica_a, texts), atol=1e-5)
        assert all(w.process.poll() is None for w in workers)
        assert all(w.stop() == 0 for w in workers)
    finally:
        server.stop()


@pytest.mark.timeout(1200)
def test_sigterm_finishes_and_acknowledges_in_flight_jobs_then_exits(
    nats_server: LocalNatsServer, stream: str, replica_a: Replica, workers: list[WorkerProcess],
    tmp_path: Path,
) -> None:  # fmt: skip
    texts = texts_for(40 * 32, "sigterm")
    source = write_texts(tmp_path / "texts.jsonl", texts)
    spec = RunSpec("embed", texts_per_job=32)  # long jobs: several forward passes each
    worker = WorkerProcess(nats_server.url, [replica_a.grpc_url], stream, tmp_path, "--max-in-flight", "4")
    workers.append(worker.wait_ready())
    asyncio.run(submit(nats_server.url, stream, source, spec))
    wait_for(lambda: worker.metrics().get("ds_triton_queue_jobs_in_flight") == 4, "4 jobs in flight")
    worker.signal(signal.SIGTERM)
    assert worker.process.wait(120) == 0
    assert "draining" in worker.output and "stopped" in worker.output

    # On a loaded machine a pull that timed out on the worker's side can still bring jobs beyond
    # its 4 slots; it hands those back on exit, and JetStream counts them as unacknowledged
    # until it delivers them again. nats-server also applies acknowledgements on its consumer's
    # own goroutine, after the publish the worker flushed: the count settles a moment later.
    handed_back = re.search(r"handed back (\d+) job", worker.output)
    unstarted = int(handed_back.group(1)) if handed_back else 0
    lag = settled_backlog(nats_server.url, stream, in_flight=unstarted)
    assert lag.in_flight == unstarted and lag.redelivered == 0, f"{lag}\n{worker.output[-3000:]}"
    results = results_of(nats_server.url, stream, source, spec)
    assert len(results) >= 4 and len({r.id for r in results}) == len(results) and all(r.ok for r in results)
    assert lag.pending + unstarted == 40 - len(results)  # the rest wait in the stream for another worker
    figure("worker SIGTERM", in_flight_at_sigterm=4, results=len(results), handed_back=unstarted,
           ack_pending_after=lag.in_flight, redelivered=lag.redelivered, left_in_stream=lag.pending)

    # The same bound as the first: 4 jobs of 32 texts keep one replica busy without a call waiting
    # out its deadline on a loaded machine (and a retry that exhausts its attempts).
    workers.append(WorkerProcess(nats_server.url, [replica_a.grpc_url], stream, tmp_path,
                                 "--max-in-flight", "4").wait_ready())  # fmt: skip
    output = tmp_path / "vectors.npy"
    summary, stats = asyncio.run(collect_all(nats_server.url, stream, source, output, spec))
    assert (summary.succeeded, stats.duplicates) == (40 * 32, 0)
    np.testing.assert_allclose(np.load(output), direct_embed(replica_a, texts), atol=1e-5)


@pytest.mark.timeout(1200)
def test_sigkill_of_a_replica_mid_run_loses_nothing(
    nats_server: LocalNatsServer, stream: str, replica_a: Replica, replica_c: Replica,
    workers: list[WorkerProcess], tmp_path: Path,
) -> None:  # fmt: skip
    ensure_running(replica_c)
    texts = texts_for(1500, "replica-kill")
    source = write_texts(tmp_path / "texts.jsonl", texts)
    urls = [replica_a.grpc_url, replica_c.grpc_url]
    workers += [WorkerProcess(nats_server.url, urls, stream, tmp_path, "--max-in-flight", "16",
                              "--backoff", "0.5") for _ in range(2)]  # fmt: skip
    for worker in workers:
        worker.wait_ready()
    spec = RunSpec("embed")
    asyncio.run(submit(nats_server.url, stream, source, spec))
    served_before = inference_count(replica_c)
    wait_for(lambda: inference_count(replica_c) - served_before >= 150, "the replica to serve 150 jobs")
    replica_c.kill()  # SIGKILL of tritonserver and its stubs, requests in flight on it

    output = tmp_path / "vectors.npy"
    summary, stats = asyncio.run(collect_all(nats_server.url, stream, source, output, spec))
    assert (summary.succeeded, summary.failed) == (1500, 0)
    np.testing.assert_allclose(np.load(output), direct_embed(replica_a, texts), atol=1e-5)
    assert all(w.process.poll() is None for w in workers)
    retried = sum(w.metrics().get("ds_triton_queue_jobs_retried_total", 0.0) for w in workers)
    figure("replica SIGKILL", rows=1500, jobs_retried_by_workers=retried, duplicates_skipped=stats.duplicates)
