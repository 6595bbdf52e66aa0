"""What workers, producers and collectors need of a broker: a small interface, one class per broker.

The worker pulls ``Delivery`` objects (never more than it can run), publishes
results durably and acknowledges afterwards; the producer publishes jobs; the
collector replays a result subject. ``NatsBroker`` (JetStream) implements it;
another broker (Kafka, RabbitMQ) is one more class with the same methods.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Protocol


class BrokerError(Exception):
    """The broker could not do what was asked right now (disconnected, timed out); try again."""


class UnroutableError(BrokerError):
    """No stream stores this subject: publishing there can never succeed (the job is invalid)."""


@dataclass(frozen=True)
class QueueNames:
    """Streams and subjects of one queue, all derived from its name (``--stream``).

    ``<name>`` holds jobs on ``<name>.jobs.<task>`` (work-queue retention: a job is
    deleted once acknowledged); ``<name>_results`` holds results on
    ``<name>.results.<run>``; ``<name>_dead`` holds dead letters on ``<name>.dead``.
    """

    name: str = "jobs"

    def __post_init__(self) -> None:
        if not self.name or any(c in self.name for c in ". *>\t\n/\\"):
            raise ValueError(
                f"queue name {self.name!r} must be one subject token (no '.', spaces or wildcards)"
            )

    @property
    def jobs_stream(self) -> str:
        return self.name

    @property
    def results_stream(self) -> str:
        return f"{self.name}_results"

    @property
    def dead_stream(self) -> str:
        return f"{self.name}_dead"

    def job_subject(self, task: str) -> str:
        return f"{self.name}.jobs.{task}"

    @property
    def jobs_filter(self) -> str:
        return f"{self.name}.jobs.>"

    def result_subject(self, run: str) -> str:
        return f"{self.name}.results.{run}"

    @property
    def results_filter(self) -> str:
        return f"{self.name}.results.>"

    @property
    def default_result_subject(self) -> str:
        return self.result_subject("default")

    @property
    def dead_subject(self) -> str:
        return f"{self.name}.dead"


@dataclass(frozen=True)
class Backlog:
    """The worker group's consumer as the broker sees it (consumer lag).

    Attributes:
        pending: Jobs in the stream not yet delivered to any worker.
        in_flight: Delivered and not yet acknowledged (running, or waiting for redelivery).
        redelivered: Of ``in_flight``, those delivered more than once.
        waiting: Pull requests of idle workers waiting for jobs.
    """

    pending: int
    in_flight: int
    redelivered: int
    waiting: int


class Delivery(Protocol):
    """One delivered message that the worker must settle exactly once (ack, retry or release)."""

    @property
    def data(self) -> bytes: ...

    @property
    def attempt(self) -> int:
        """1 on the first delivery; redeliveries (retries, crashed workers) count up."""
        ...

    async def ack(self) -> None:
        """Done: the broker forgets the job (call only after its result is durably published)."""

    async def retry_later(self, delay_s: float) -> None:
        """Deliver it again (to any worker) after ``delay_s``."""

    async def release(self) -> None:
        """Give it back now without counting a failure (a stopping worker's unstarted job)."""

    async def still_working(self) -> None:
        """Reset the broker's redelivery timer while a long job runs."""


class WorkerBroker(Protocol):
    """The worker's side: pull, publish durably, read its backlog."""

    names: QueueNames

    async def fetch(self, max_messages: int, wait_s: float) -> list[Delivery]:
        """Up to ``max_messages`` jobs; an empty list when none arrived within ``wait_s``.

        Raises:
            BrokerError: Disconnected (the caller waits and calls again).
        """
        ...

    async def publish(self, subject: str, payload: bytes, dedup_id: str | None = None) -> None:
        """Publish and wait until the broker has stored it.

        ``dedup_id``: the broker drops a second message with the same id (its window).

        Raises:
            UnroutableError: No stream stores ``subject``.
            BrokerError: Not stored now (disconnected, timed out).
        """
        ...

    async def backlog(self) -> Backlog: ...

    async def close(self) -> None: ...


class ProducerBroker(Protocol):
    """The producer's and collector's side: publish jobs, replay a result subject."""

    names: QueueNames

    async def publish(self, subject: str, payload: bytes, dedup_id: str | None = None) -> None: ...

    def replay(self, subject: str) -> AsyncGenerator[list[bytes], None]:
        """Every message stored on ``subject`` from the first, then new ones as they arrive.

        Yields them in batches, and an empty batch after a second without any, so the
        caller can flush and check its own deadline. Survives broker restarts (it resumes
        after the last message it yielded).
        """
        ...

    async def close(self) -> None: ...
