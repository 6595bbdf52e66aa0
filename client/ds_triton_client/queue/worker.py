"""``ds-triton-client worker``: pull jobs from a broker, run them on Triton, publish results, then ack.

Delivery guarantees, and where each comes from:

* at-least-once: a job is acknowledged only after its result (or dead letter)
  is stored by the broker; a worker that dies before that leaves the job to be
  redelivered to another one after the consumer's ``ack_wait``;
* one result per job id: results are published with the job id as the
  broker's deduplication id, and collectors keep one result per id;
* bounded work: a worker never holds more than ``max_in_flight`` jobs; it pulls
  only as many as it has free slots, so a backlog stays in the broker;
* retries: retryable failures (overload, replica down, model not ready,
  timeouts) go back to the broker with exponential backoff, until
  ``max_attempts`` deliveries; then the job is dead-lettered with its last error;
* invalid jobs, jobs the server rejects as invalid, and jobs delivered after
  their deadline are dead-lettered at once (never run);
* SIGTERM: stop pulling, let in-flight jobs finish and be acknowledged, exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from ds_triton_client.codec import GenerationResult
from ds_triton_client.concurrency import gather_bounded
from ds_triton_client.errors import ClientError, DeadlineExceededError
from ds_triton_client.queue.broker import BrokerError, Delivery, UnroutableError, WorkerBroker
from ds_triton_client.queue.job import (
    SUBJECT,
    InvalidJobError,
    Job,
    JobFailure,
    JobResult,
    decode_object,
    encode_embeddings,
)
from ds_triton_client.queue.metrics import WorkerMetrics
from ds_triton_client.retry import RetryPolicy

log = logging.getLogger("ds_triton_client.queue")


class InferenceClient(Protocol):
    """What the worker needs of ``AsyncClient``."""

    async def embed(self, texts: Any, model: str = ..., timeout: float | None = None) -> Any: ...
    async def generate(
        self, prompt: str, model: str = ..., timeout: float | None = None, **sampling: Any
    ) -> GenerationResult: ...


@dataclass(frozen=True)
class WorkerOptions:
    """How one worker runs.

    Attributes:
        max_in_flight: Jobs held at once (running or publishing); the broker keeps the rest.
        max_attempts: Deliveries of a job before a retryable failure dead-letters it.
        backoff_base_s: Delay before the second attempt; doubles per attempt (with jitter).
        backoff_max_s: Upper bound of one delay.
        timeout_s: Deadline of each inference call (retries across replicas included),
            unless the job sets ``timeout_s``.
        drain_timeout_s: On SIGTERM, how long in-flight jobs may take to finish; those still
            running then are handed back to the broker for another worker.
        heartbeat_s: How often running jobs tell the broker they are still being worked on
            (must be well under the consumer's ``ack_wait``).
        fetch_wait_s: How long one pull waits for jobs when the queue is empty.
        lag_interval_s: How often the consumer lag is read from the broker (0: never).
        worker_id: Written into results and dead letters (default ``host:pid``).
    """

    max_in_flight: int = 32
    max_attempts: int = 5
    backoff_base_s: float = 1.0
    backoff_max_s: float = 30.0
    timeout_s: float = 60.0
    drain_timeout_s: float = 60.0
    heartbeat_s: float = 10.0
    fetch_wait_s: float = 1.0
    lag_interval_s: float = 5.0
    worker_id: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")

    def __post_init__(self) -> None:
        if self.max_in_flight < 1:
            raise ValueError("max_in_flight must be >= 1")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")


def failure_of(exc: BaseException) -> JobFailure:
    """The error a failed attempt reports, and whether that kind is retried.

    Retried: what the client marks retryable (overload, connection failures, model not
    ready, no healthy endpoint), call timeouts, and unexpected exceptions (bounded by
    ``max_attempts``). Not retried: invalid input, permission denied, server errors.
    """
    if isinstance(exc, ClientError):
        retryable = exc.retryable or isinstance(exc, DeadlineExceededError)
        return JobFailure(type(exc).__name__, str(exc), retryable)
    return JobFailure(type(exc).__name__, str(exc) or type(exc).__name__, True)


async def run_job(client: InferenceClient, job: Job, timeout_s: float) -> dict[str, Any]:
    """Run one job on the client; its ``outputs`` object (see ``result.schema.json``)."""
    if job.task == "embed":
        matrix = await client.embed(list(job.inputs), model=job.model_name, timeout=timeout_s)
        return {"encoding": job.encoding, "dim": int(matrix.shape[1]),
                "embeddings": encode_embeddings(matrix, job.encoding)}  # fmt: skip

    async def one(prompt: str) -> dict[str, object]:
        result = await client.generate(prompt, model=job.model_name, timeout=timeout_s, **job.parameters)
        return result.as_dict()

    return {"generations": await gather_bounded(one, list(job.inputs), len(job.inputs))}


class Worker:
    """Pulls, runs and settles jobs until stopped (see the module docstring).

    Args:
        broker: Bound to the worker group's consumer.
        client: Runs the inference (an ``AsyncClient`` over the Triton replicas).
        options: Limits, retries, timeouts.
        metrics: Where to count (a fresh registry if None).
    """

    def __init__(
        self,
        broker: WorkerBroker,
        client: InferenceClient,
        options: WorkerOptions | None = None,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self.broker = broker
        self.client = client
        self.options = options or WorkerOptions()
        self.metrics = metrics or WorkerMetrics()
        self.metrics.in_flight_limit.set(self.options.max_in_flight)
        # The client's backoff (equal jitter); attempts are the broker's delivery count.
        self._backoff = RetryPolicy(self.options.max_attempts, self.options.backoff_base_s,
                                    self.options.backoff_max_s)  # fmt: skip
        self._running: dict[asyncio.Task[None], Delivery] = {}
        self.stopping = asyncio.Event()

    # --- the loop ------------------------------------------------------------------------

    async def run(self) -> None:
        """Work until ``stop()`` (or SIGTERM via ``install_signal_handlers``); then drain and return."""
        helpers = [asyncio.create_task(self._heartbeat(), name="heartbeat")]
        if self.options.lag_interval_s > 0:
            helpers.append(asyncio.create_task(self._watch_lag(), name="lag"))
        try:
            await self._pull_loop()
            await self._drain()
        finally:
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)

    def stop(self) -> None:
        """Stop pulling; in-flight jobs finish (``drain_timeout_s``) before ``run`` returns."""
        self.stopping.set()

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT: graceful stop; a second one hands in-flight jobs back at once."""
        loop = asyncio.get_running_loop()

        def on_signal(signum: int) -> None:
            if self.stopping.is_set():
                log.warning("second %s: handing in-flight jobs back now", signal.Signals(signum).name)
                for task in list(self._running):
                    task.cancel()
                return
            log.info("%s: finishing %d in-flight job(s), then exiting", signal.Signals(signum).name,
                     len(self._running))
            self.stop()

        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, on_signal, signum)

    async def _pull_loop(self) -> None:
        stopping = asyncio.create_task(self.stopping.wait())
        try:
            while not self.stopping.is_set():
                free = self.options.max_in_flight - len(self._running)
                if free <= 0:
                    await asyncio.wait([*self._running, stopping], return_when=asyncio.FIRST_COMPLETED)
                    continue
                try:
                    deliveries = await self.broker.fetch(free, self.options.fetch_wait_s)
                except BrokerError as exc:
                    self.metrics.broker_up.set(0)
                    log.warning("pulling jobs: %s", exc)
                    await asyncio.wait([stopping], timeout=0.5)
                    continue
                self.metrics.broker_up.set(1)
                for delivery in deliveries:
                    self._start(delivery)
        finally:
            stopping.cancel()

    def _start(self, delivery: Delivery) -> None:
        task = asyncio.create_task(self._handle(delivery))
        self._running[task] = delivery
        self.metrics.in_flight.set(len(self._running))
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.pop(task, None)
        self.metrics.in_flight.set(len(self._running))
        if not task.cancelled() and task.exception() is not None:
            log.error("job handler failed", exc_info=task.exception())

    async def _drain(self) -> None:
        """Finish what is in flight (bounded), hand back the rest, flush acknowledgements."""
        running = list(self._running)
        if running:
            log.info("draining %d in-flight job(s) (up to %gs)", len(running), self.options.drain_timeout_s)
            _done, late = await asyncio.wait(running, timeout=self.options.drain_timeout_s)
            for task in late:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
        await self.broker.close()

    # --- one job -------------------------------------------------------------------------

    async def _handle(self, delivery: Delivery) -> None:
        task = "unknown"
        try:
            try:
                job = Job.parse(delivery.data)
            except InvalidJobError as exc:
                self.metrics.received.labels(task).inc()
                await self._reject_unreadable(delivery, exc)
                return
            task = job.task
            self.metrics.received.labels(task).inc()
            started = time.time()
            if job.deadline is not None and started > job.deadline:
                late = started - job.deadline
                when = datetime.fromtimestamp(job.deadline, UTC).isoformat()
                await self._dead_letter(delivery, job, JobFailure(
                    "DeadlineExpired", f"deadline {when} passed {late:.3f}s before the job could start"),
                    reason="deadline", started=started)  # fmt: skip
                return
            try:
                outputs = await run_job(self.client, job, job.timeout_s or self.options.timeout_s)
            except Exception as exc:
                await self._failed(delivery, job, failure_of(exc), started)
                return
            finished = time.time()
            self.metrics.run_seconds.labels(task).observe(finished - started)
            result = self._result(job, delivery, outputs, None, started, finished)
            try:
                await self._publish(job.reply_to or self.broker.names.default_result_subject,
                                    result.encode(), job.id)  # fmt: skip
            except UnroutableError as exc:
                await self._dead_letter(delivery, job, JobFailure("InvalidJob", str(exc)),
                                        reason="invalid", started=started, reply=False)  # fmt: skip
                return
            await delivery.ack()
            self.metrics.succeeded.labels(task).inc()
            if job.submitted_at is not None:
                self.metrics.end_to_end_seconds.labels(task).observe(max(0.0, time.time() - job.submitted_at))
        except asyncio.CancelledError:
            # Stopping without waiting for this job: another worker takes it now.
            await asyncio.shield(delivery.release())
            self.metrics.released.inc()
            raise

    async def _failed(self, delivery: Delivery, job: Job, failure: JobFailure, started: float) -> None:
        self.metrics.failed.labels(job.task, failure.type).inc()
        attempt = delivery.attempt
        if not failure.retryable:
            reason = "invalid" if failure.type == "InvalidInputError" else "error"
            await self._dead_letter(delivery, job, failure, reason=reason, started=started)
            return
        if attempt < self.options.max_attempts:
            delay = self._backoff.delay(attempt)
            log.info("job %s attempt %d failed (%s); retry in %.2fs", job.id, attempt, failure.message, delay)
            await delivery.retry_later(delay)
            self.metrics.retried.labels(job.task).inc()
            return
        exhausted = JobFailure("RetriesExhausted", f"{attempt} attempt(s) failed; last error "
                               f"({failure.type}): {failure.message}", retryable=True)  # fmt: skip
        await self._dead_letter(delivery, job, exhausted, reason="retries", started=started)

    def _result(self, job: Job, delivery: Delivery, outputs: Mapping[str, Any] | None,
                failure: JobFailure | None, started: float | None, finished: float | None) -> JobResult:
        queued = started - job.submitted_at if started is not None and job.submitted_at is not None else None
        return JobResult(
            id=job.id, task=job.task, model=job.model_name, outputs=outputs, error=failure,
            timings={"queued_s": _round(queued), "run_s": _round(finished - started)
                     if started is not None and finished is not None else None,
                     "started_at": started, "finished_at": finished},
            attempts=delivery.attempt, worker=self.options.worker_id, metadata=job.metadata,
        )  # fmt: skip

    async def _dead_letter(self, delivery: Delivery, job: Job, failure: JobFailure, *, reason: str,
                           started: float | None = None, reply: bool = True) -> None:
        """Store the dead letter, then the failed result on the job's reply subject, then ack."""
        letter = {"id": job.id, "error": failure.to_dict(), "attempts": delivery.attempt,
                  "worker": self.options.worker_id, "dead_lettered_at": time.time(), "job": job.to_dict()}
        await self._publish(self.broker.names.dead_subject, _json(letter), f"dead:{job.id}")
        if reply:
            result = self._result(job, delivery, None, failure, started, time.time())
            try:
                await self._publish(job.reply_to or self.broker.names.default_result_subject,
                                    result.encode(), job.id)  # fmt: skip
            except UnroutableError as exc:
                log.warning("job %s: its error result cannot be stored: %s", job.id, exc)
        log.warning("job %s dead-lettered (%s): %s", job.id, failure.type, failure.message)
        await delivery.ack()
        self.metrics.dead_lettered.labels(job.task, reason).inc()

    async def _reject_unreadable(self, delivery: Delivery, error: InvalidJobError) -> None:
        """An invalid job: dead-letter it as it came; answer its reply subject when it has one."""
        failure = JobFailure("InvalidJob", str(error))
        self.metrics.failed.labels("unknown", failure.type).inc()
        try:
            raw: dict[str, Any] | None = decode_object(delivery.data, "job")
        except InvalidJobError:
            raw = None
        job_id = raw.get("id") if raw and isinstance(raw.get("id"), str) and raw["id"] else None
        letter: dict[str, Any] = {"id": job_id, "error": failure.to_dict(), "attempts": delivery.attempt,
                                  "worker": self.options.worker_id, "dead_lettered_at": time.time(),
                                  "job": raw}  # fmt: skip
        if raw is None:
            letter["raw"] = delivery.data.decode("utf-8", errors="replace")
        await self._publish(self.broker.names.dead_subject, _json(letter),
                            f"dead:{job_id}" if job_id else None)  # fmt: skip
        reply = raw.get("reply_to") if raw else None
        if job_id and isinstance(reply, str) and SUBJECT.match(reply):
            metadata = raw.get("metadata") if raw and isinstance(raw.get("metadata"), dict) else {}
            task = raw.get("task") if raw and raw.get("task") in ("embed", "generate") else None
            result = JobResult(id=job_id, task=task, model=None, outputs=None, error=failure, timings={},
                               attempts=delivery.attempt, worker=self.options.worker_id,
                               metadata=metadata or {})  # fmt: skip
            try:
                await self._publish(reply, result.encode(), job_id)
            except UnroutableError as exc:
                log.warning("job %s: its error result cannot be stored: %s", job_id, exc)
        log.warning("job %s dead-lettered (InvalidJob): %s", job_id or "(no id)", error)
        await delivery.ack()
        self.metrics.dead_lettered.labels("unknown", "invalid").inc()

    async def _publish(self, subject: str, payload: bytes, dedup_id: str | None) -> None:
        """Publish until the broker stores it (waiting out disconnects and restarts).

        Raises:
            UnroutableError: No stream stores ``subject`` (never retried).
        """
        delay = 0.1
        while True:
            try:
                await self.broker.publish(subject, payload, dedup_id)
                self.metrics.broker_up.set(1)
                return
            except UnroutableError:
                raise
            except BrokerError as exc:
                self.metrics.broker_up.set(0)
                self.metrics.publish_retries.inc()
                log.warning("publishing to %s: %s; trying again in %.1fs", subject, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    # --- background ----------------------------------------------------------------------

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.options.heartbeat_s)
            for delivery in list(self._running.values()):
                await delivery.still_working()

    async def _watch_lag(self) -> None:
        while True:
            with contextlib.suppress(BrokerError):
                self.metrics.set_backlog(await self.broker.backlog())
            await asyncio.sleep(self.options.lag_interval_s)


def _json(value: Mapping[str, Any]) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)
