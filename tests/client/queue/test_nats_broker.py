"""NatsBroker against a real nats-server (JetStream on file storage): streams, deduplication,
bounded pulls, delayed retries, unroutable subjects, and replay through a server restart."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from ds_triton_client.queue.broker import Delivery, QueueNames, UnroutableError
from ds_triton_client.queue.local_nats import LocalNatsServer
from ds_triton_client.queue.nats_broker import ConsumerSettings, NatsBroker

pytestmark = pytest.mark.server


async def connected(server: LocalNatsServer, stream: str) -> NatsBroker:
    broker = await NatsBroker.connect(server.url, QueueNames(stream))
    await broker.ensure_streams()
    return broker


async def fetch_until(broker: NatsBroker, limit: int, stop_at: int | None = None,
                      timeout_s: float = 60) -> list[Delivery]:
    """Pull until ``stop_at`` (default ``limit``) jobs came, never asking for more than ``limit`` in all."""
    got: list[Delivery] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < (stop_at or limit) and time.monotonic() < deadline:
        batch = await broker.fetch(limit - len(got), 1.0)
        assert len(batch) <= limit - len(got)
        got += batch
    return got


async def test_publishes_are_deduplicated_by_id_and_pulls_are_bounded(
    nats_server: LocalNatsServer, stream: str
) -> None:
    broker = await connected(nats_server, stream)
    try:
        names = broker.names
        for i in range(10):
            await broker.publish(names.job_subject("embed"), f"job {i}".encode(), f"id-{i}")
        await broker.publish(names.job_subject("embed"), b"job 3 again", "id-3")  # dropped by the stream
        await broker.bind_worker(ConsumerSettings(ack_wait_s=5))
        first = await fetch_until(broker, 4)  # a loaded machine may hand them over in pieces
        assert [d.data for d in first] == [f"job {i}".encode() for i in range(4)]
        backlog = await broker.backlog()
        # Delivered: these 4, and on a loaded machine some that came late for a pull that timed
        # out on the client (fetch keeps them back for its next call).
        assert backlog.pending + backlog.in_flight == 10 and backlog.in_flight >= 4, backlog
        for delivery in first:
            await delivery.ack()
        rest = await fetch_until(broker, 100, stop_at=6)
        assert len(rest) == 6 and all(d.attempt == 1 for d in rest)
        for delivery in rest:
            await delivery.ack()
        assert await broker.fetch(5, 0.2) == []
        await asyncio.sleep(0.2)
        backlog = await broker.backlog()
        assert (backlog.pending, backlog.in_flight) == (0, 0)
    finally:
        await broker.close()


async def test_a_retried_delivery_comes_back_after_its_delay_with_the_attempt_counted(
    nats_server: LocalNatsServer, stream: str
) -> None:
    broker = await connected(nats_server, stream)
    try:
        await broker.publish(broker.names.job_subject("embed"), b"job", "only")
        await broker.bind_worker(ConsumerSettings(ack_wait_s=30))
        (delivery,) = await broker.fetch(1, 1.0)
        retried_at = time.monotonic()
        await delivery.retry_later(1.0)
        assert await broker.fetch(1, 0.5) == []  # not before its delay
        again: list[object] = []
        while not again:
            again = await broker.fetch(1, 1.0)  # type: ignore[assignment]
        assert time.monotonic() - retried_at >= 0.9
        (redelivered,) = again
        assert redelivered.attempt == 2  # type: ignore[attr-defined]
        await redelivered.ack()  # type: ignore[attr-defined]
    finally:
        await broker.close()


async def test_a_subject_no_stream_stores_is_unroutable(nats_server: LocalNatsServer, stream: str) -> None:
    broker = await connected(nats_server, stream)
    try:
        with pytest.raises(UnroutableError, match=r"nowhere\.at\.all"):
            await broker.publish("nowhere.at.all", b"x", "a")
        await broker.publish(broker.names.result_subject("r1"), b"x", "a")
    finally:
        await broker.close()


async def test_replay_reads_everything_once_through_a_server_restart(tmp_path: Path) -> None:
    server = LocalNatsServer(tmp_path / "nats").start()
    try:
        broker = await connected(server, "replay")
        subject = broker.names.result_subject("r")
        for i in range(50):
            await broker.publish(subject, str(i).encode(), f"r-{i}")
        seen: list[bytes] = []
        replay = broker.replay(subject)
        async for batch in replay:
            seen += batch
            if len(seen) == 50:
                break
        server.kill()  # SIGKILL: JetStream recovers its files on the next start
        server.start()
        for i in range(50, 80):
            while True:  # the client reconnects on its own; publishes fail until it has
                try:
                    await broker.publish(subject, str(i).encode(), f"r-{i}")
                    break
                except Exception:
                    await asyncio.sleep(0.2)
        async for batch in replay:
            seen += batch
            if len(seen) >= 80:
                break
        await replay.aclose()
        assert [int(s) for s in seen] == list(range(80))
        await broker.close()
    finally:
        server.stop()
