"""The worker's decisions against an in-memory broker and client: ack after publish, retry with
backoff, dead letters with their error, deadlines, bounded pulls, draining on stop."""

from __future__ import annotations

import asyncio
import json
import time

import numpy as np
import pytest

from ds_triton_client.errors import InvalidInputError, OverloadedError, ServerConnectionError, ServerError
from ds_triton_client.queue.job import Job, JobResult, decode_embeddings
from ds_triton_client.queue.worker import Worker, WorkerOptions, failure_of
from tests.client.queue.fakes import FakeBroker, FakeClient

FAST = WorkerOptions(max_in_flight=4, max_attempts=3, backoff_base_s=0.01, backoff_max_s=0.05,
                     heartbeat_s=0.02, fetch_wait_s=0.01, lag_interval_s=0, worker_id="test:1")  # fmt: skip


def job(job_id: str, *texts: str, **fields: object) -> bytes:
    inputs = texts or ("hello",)
    return Job(id=job_id, task="embed", inputs=inputs, reply_to="jobs.results.r", **fields).encode()  # type: ignore[arg-type]


async def run_until_settled(worker: Worker, broker: FakeBroker, count: int, timeout: float = 5.0) -> None:
    task = asyncio.create_task(worker.run())
    deadline = time.monotonic() + timeout
    while len([d for d in broker.settled if d.settled != "retry"]) < count:
        assert time.monotonic() < deadline, f"only {len(broker.settled)} settled: {broker.settled}"
        await asyncio.sleep(0.005)
    worker.stop()
    await task


def results(broker: FakeBroker, subject: str = "jobs.results.r") -> list[JobResult]:
    return [JobResult.parse(p) for p in broker.published.get(subject, [])]


def dead_letters(broker: FakeBroker) -> list[dict[str, object]]:
    return [json.loads(p) for p in broker.published.get("jobs.dead", [])]


async def test_results_are_published_before_the_ack_and_carry_the_outputs() -> None:
    broker, client = FakeBroker(), FakeClient()
    broker.add(job("a", "one", "three"), job("b", "xy", encoding="float"))
    await run_until_settled(Worker(broker, client, FAST), broker, 2)
    assert [d.settled for d in broker.settled] == ["ack", "ack"]
    by_id = {r.id: r for r in results(broker)}
    assert by_id["a"].ok and by_id["a"].outputs is not None
    np.testing.assert_array_equal(decode_embeddings(by_id["a"].outputs["embeddings"]),
                                  [[3, 1, -1], [5, 1, -1]])  # fmt: skip
    assert by_id["b"].outputs is not None and by_id["b"].outputs["embeddings"] == [[2.0, 1.0, -1.0]]
    assert by_id["a"].attempts == 1 and by_id["a"].worker == "test:1"
    assert broker.closed  # acks flushed on the way out


async def test_retryable_failure_goes_back_with_backoff_then_succeeds() -> None:
    broker = FakeBroker()
    client = FakeClient(failures={"flaky": [OverloadedError("full"), ServerConnectionError("refused")]})
    broker.add(job("a", "flaky"))
    worker = Worker(broker, client, FAST)
    await run_until_settled(worker, broker, 1)
    assert [d.settled for d in broker.settled] == ["retry", "retry", "ack"]
    assert all(0.005 <= (d.retry_delay or 0) <= 0.05 for d in broker.settled[:2])
    (result,) = results(broker)
    assert result.ok and result.attempts == 3
    assert worker.metrics.retried.labels("embed")._value.get() == 2


async def test_exhausted_retries_are_dead_lettered_with_the_last_error_and_answered() -> None:
    broker = FakeBroker()
    client = FakeClient(failures={"down": [ServerConnectionError("connection refused")] * 5})
    broker.add(job("a", "down", metadata={"row": 7}))
    await run_until_settled(Worker(broker, client, FAST), broker, 1)
    assert [d.settled for d in broker.settled] == ["retry", "retry", "ack"]
    (letter,) = dead_letters(broker)
    assert letter["id"] == "a" and letter["attempts"] == 3
    assert letter["error"]["type"] == "RetriesExhausted"  # type: ignore[index]
    assert "ServerConnectionError" in letter["error"]["message"]  # type: ignore[index]
    (result,) = results(broker)
    assert not result.ok and result.error is not None and result.error.type == "RetriesExhausted"
    assert result.metadata == {"row": 7}


@pytest.mark.parametrize("error", [InvalidInputError("row 0 is empty"), ServerError("model crashed")])
async def test_non_retryable_errors_are_dead_lettered_at_once(error: Exception) -> None:
    broker = FakeBroker()
    broker.add(job("bad", "x"), job("good", "fine"))
    await run_until_settled(Worker(broker, FakeClient(failures={"x": [error]}), FAST), broker, 2)
    assert sorted(d.settled or "" for d in broker.settled) == ["ack", "ack"]
    (letter,) = dead_letters(broker)
    assert letter["id"] == "bad" and letter["error"]["type"] == type(error).__name__  # type: ignore[index]
    assert str(error) in letter["error"]["message"]  # type: ignore[index]
    assert {r.id: r.ok for r in results(broker)} == {"bad": False, "good": True}


def raw(**fields: object) -> bytes:
    return json.dumps({"id": "j", "inputs": ["x"], "task": "embed", **fields}).encode()


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (raw(inputs=None), "'inputs'"),
        (raw(task="dance", reply_to="jobs.results.r"), "'task'"),
        (raw(colour=1), "unknown field"),
        (raw(parameters={"top_k": 1}), "generate jobs only"),
    ],
)
async def test_invalid_jobs_are_dead_lettered_with_the_field_named(payload: bytes, message: str) -> None:
    broker = FakeBroker()
    broker.add(payload)
    await run_until_settled(Worker(broker, FakeClient(), FAST), broker, 1)
    (letter,) = dead_letters(broker)
    assert letter["error"]["type"] == "InvalidJob" and message in letter["error"]["message"]  # type: ignore[index]
    if payload == b"not json":
        assert letter["raw"] == "not json" and letter["job"] is None
    assert broker.settled[0].settled == "ack"


async def test_an_invalid_job_with_an_id_and_reply_subject_is_answered_too() -> None:
    broker = FakeBroker()
    broker.add(json.dumps({"id": "j", "task": "dance", "inputs": ["x"], "reply_to": "jobs.results.r",
                           "metadata": {"row": 3}}).encode())  # fmt: skip
    await run_until_settled(Worker(broker, FakeClient(), FAST), broker, 1)
    (result,) = results(broker)
    assert result.id == "j" and result.error is not None and result.error.type == "InvalidJob"
    assert result.metadata == {"row": 3}


async def test_expired_jobs_are_dead_lettered_without_running() -> None:
    broker, client = FakeBroker(), FakeClient()
    broker.add(job("late", "x", deadline=time.time() - 5), job("on-time", "y", deadline=time.time() + 60))
    await run_until_settled(Worker(broker, client, FAST), broker, 2)
    assert [c[1] for c in client.calls] == [["y"]]
    (letter,) = dead_letters(broker)
    assert letter["id"] == "late" and letter["error"]["type"] == "DeadlineExpired"  # type: ignore[index]


async def test_a_reply_subject_no_stream_stores_dead_letters_the_job() -> None:
    broker = FakeBroker(unroutable={"nowhere.x"})
    broker.add(Job(id="a", task="embed", inputs=("x",), reply_to="nowhere.x").encode())
    await run_until_settled(Worker(broker, FakeClient(), FAST), broker, 1)
    (letter,) = dead_letters(broker)
    assert letter["error"]["type"] == "InvalidJob" and "nowhere.x" in letter["error"]["message"]  # type: ignore[index]


async def test_publishing_waits_out_a_broker_outage_before_acking() -> None:
    broker = FakeBroker(failing_publishes=3)
    broker.add(job("a", "x"))
    worker = Worker(broker, FakeClient(), FAST)
    await run_until_settled(worker, broker, 1)
    assert [d.settled for d in broker.settled] == ["ack"] and len(results(broker)) == 1
    assert worker.metrics.publish_retries._value.get() == 3


async def test_pulls_never_ask_for_more_than_the_free_slots() -> None:
    broker = FakeBroker()
    broker.add(*(job(str(i), f"t{i}") for i in range(20)))
    client = FakeClient(delay_s=0.01)
    worker = Worker(broker, client, FAST)
    peak = 0

    async def watch() -> None:
        nonlocal peak
        while True:
            peak = max(peak, len(worker._running))
            await asyncio.sleep(0.001)

    watcher = asyncio.create_task(watch())
    await run_until_settled(worker, broker, 20)
    watcher.cancel()
    assert max(broker.fetch_sizes) <= FAST.max_in_flight and peak <= FAST.max_in_flight
    assert len(results(broker)) == 20


async def test_stop_lets_in_flight_jobs_finish_and_ack_before_returning() -> None:
    broker = FakeBroker()
    broker.add(*(job(str(i), f"t{i}") for i in range(4)))
    worker = Worker(broker, FakeClient(delay_s=0.2), FAST)
    task = asyncio.create_task(worker.run())
    while len(worker._running) < 4:
        await asyncio.sleep(0.005)
    worker.stop()
    broker.add(job("later", "not taken"))
    await task
    assert [d.settled for d in broker.settled] == ["ack"] * 4
    assert len(broker.queue) == 1  # pulled by nobody after the stop


async def test_jobs_still_running_at_the_drain_timeout_are_handed_back() -> None:
    broker = FakeBroker()
    broker.add(job("slow", "x"))
    options = WorkerOptions(**{**FAST.__dict__, "drain_timeout_s": 0.05})
    worker = Worker(broker, FakeClient(delay_s=5), options)
    task = asyncio.create_task(worker.run())
    while not worker._running:
        await asyncio.sleep(0.005)
    worker.stop()
    await asyncio.wait_for(task, 2)
    assert [d.settled for d in broker.settled] == ["release"] and broker.queue[0].attempt == 2


async def test_long_jobs_tell_the_broker_they_are_still_running() -> None:
    broker = FakeBroker()
    broker.add(job("slow", "x"))
    await run_until_settled(Worker(broker, FakeClient(delay_s=0.15), FAST), broker, 1)
    assert broker.settled[0].extended >= 3


async def test_generate_jobs_run_every_prompt_with_their_sampling() -> None:
    broker, client = FakeBroker(), FakeClient()
    broker.add(Job(id="g", task="generate", inputs=("ab", "cd"), parameters={"max_tokens": 4},
                   reply_to="jobs.results.r").encode())  # fmt: skip
    await run_until_settled(Worker(broker, client, FAST), broker, 1)
    (result,) = results(broker)
    assert result.outputs == {"generations": [
        {"text": "AB", "num_input_tokens": 3, "num_output_tokens": 4, "finish_reason": "length"},
        {"text": "CD", "num_input_tokens": 3, "num_output_tokens": 4, "finish_reason": "length"}]}
    assert all(call[3] == {"max_tokens": 4} for call in client.calls)


def test_failure_kinds() -> None:
    assert failure_of(OverloadedError("full")).retryable
    assert not failure_of(InvalidInputError("bad")).retryable
    assert failure_of(RuntimeError("surprise")).retryable  # bounded by max_attempts
