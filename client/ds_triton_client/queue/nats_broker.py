"""The broker interface on NATS JetStream (nats-py): streams, a durable pull consumer, durable publishes.

Jobs live in a work-queue stream (a job is deleted once acknowledged); every
worker of a group binds the same durable pull consumer, so each job goes to one
worker at a time and is redelivered if that worker dies before acknowledging.
Results and dead letters are published with ``Nats-Msg-Id`` set, so the stream
itself drops a second copy within its deduplication window.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import Any

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.client import JetStreamContext

from ds_triton_client.queue.broker import Backlog, BrokerError, Delivery, QueueNames, UnroutableError

log = logging.getLogger("ds_triton_client.queue")

DAY_S = 24 * 3600.0
#: How long a pull for a batch waits when jobs are already queued (they arrive at once).
PROBE_S = 0.02


@dataclass(frozen=True)
class StreamSettings:
    """Retention of the three streams (applied when this client creates them).

    Attributes:
        dedup_window_s: Window in which a second job or result with the same id is dropped;
            longer than a redelivery takes (``ack_wait`` plus retry backoff).
        results_max_age_s: How long results stay for collectors.
        dead_max_age_s: How long dead letters stay for operators.
        replicas: Copies of each stream in a NATS cluster (1 on a single server).
    """

    dedup_window_s: float = 600.0
    results_max_age_s: float = 7 * DAY_S
    dead_max_age_s: float = 30 * DAY_S
    replicas: int = 1


@dataclass(frozen=True)
class ConsumerSettings:
    """The worker group's durable consumer.

    Attributes:
        durable: Its name; every worker of the group uses the same one.
        filter_subject: Which jobs the group takes (default: every task of the queue).
        ack_wait_s: A delivered job not acknowledged in this time goes to another worker
            (workers extend it while a job runs, so it bounds how long a dead worker's jobs wait).
        max_ack_pending: Jobs delivered and unacknowledged across the whole group.
    """

    durable: str = "workers"
    filter_subject: str | None = None
    ack_wait_s: float = 30.0
    max_ack_pending: int = 20_000


_TRANSIENT = (
    nats.errors.TimeoutError,
    nats.errors.ConnectionClosedError,
    nats.errors.NoRespondersError,
    nats.errors.OutboundBufferLimitError,
    nats.errors.StaleConnectionError,
    nats.js.errors.APIError,
    asyncio.TimeoutError,
    OSError,
)


class NatsDelivery:
    """A JetStream message as a ``Delivery``."""

    def __init__(self, msg: Msg) -> None:
        self._msg = msg

    @property
    def data(self) -> bytes:
        return bytes(self._msg.data)

    @property
    def attempt(self) -> int:
        return int(self._msg.metadata.num_delivered)

    async def ack(self) -> None:
        await self._settle(self._msg.ack())

    async def retry_later(self, delay_s: float) -> None:
        await self._settle(self._msg.nak(delay=delay_s))

    async def release(self) -> None:
        await self._settle(self._msg.nak())

    async def still_working(self) -> None:
        await self._settle(self._msg.in_progress())

    @staticmethod
    async def _settle(call: Any) -> None:
        # An ack is a plain publish: while reconnecting nats-py buffers it; if it is lost the
        # job is redelivered and its result deduplicated, so this never raises into the worker.
        try:
            await call
        except (nats.errors.Error, OSError) as exc:
            log.warning("could not settle a delivery (it will be redelivered): %s", exc)


class NatsBroker:
    """JetStream broker for workers, producers and collectors (see ``broker.py``).

    Use ``await NatsBroker.connect(...)``; ``close()`` when done.
    """

    def __init__(self, nc: NatsClient, names: QueueNames, streams: StreamSettings) -> None:
        self._nc = nc
        self._js = nc.jetstream()
        self.names = names
        self.streams = streams
        self._consumer: ConsumerSettings | None = None
        self._sub: Any = None
        # Jobs nats-py handed over beyond what a fetch asked for (see ``fetch``).
        self._surplus: list[Msg] = []
        self._routable: set[str] = set()
        self._closing = asyncio.Event()

    @classmethod
    async def connect(
        cls,
        servers: str | Sequence[str],
        names: QueueNames | None = None,
        streams: StreamSettings | None = None,
        *,
        name: str = "ds-triton-client",
        connect_timeout_s: float = 30.0,
    ) -> NatsBroker:
        """Connect (retrying until ``connect_timeout_s``), reconnecting forever afterwards.

        Raises:
            BrokerError: No server answered in time.
        """
        urls = [s.strip() for s in servers.split(",")] if isinstance(servers, str) else list(servers)

        async def on_error(exc: Exception) -> None:
            log.warning("nats: %s", exc)

        closing = asyncio.Event()

        async def on_disconnect() -> None:
            if not closing.is_set():
                log.warning("nats: disconnected; reconnecting")

        async def on_reconnect() -> None:
            log.warning("nats: reconnected")

        loop = asyncio.get_running_loop()
        give_up = loop.time() + connect_timeout_s
        while True:
            try:
                nc = await nats.connect(
                    urls,
                    name=name,
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=0.5,
                    connect_timeout=2,
                    error_cb=on_error,
                    disconnected_cb=on_disconnect,
                    reconnected_cb=on_reconnect,
                )
                break
            except (nats.errors.Error, OSError) as exc:
                if loop.time() > give_up:
                    raise BrokerError(f"no NATS server answered at {', '.join(urls)}: {exc}") from None
                await asyncio.sleep(0.5)
        broker = cls(nc, names or QueueNames(), streams or StreamSettings())
        broker._closing = closing
        return broker

    # --- streams and the worker group's consumer -----------------------------------------

    async def ensure_streams(self) -> None:
        """Create the queue's three streams if they do not exist (existing ones are left as they are)."""
        names, settings = self.names, self.streams
        window = settings.dedup_window_s
        wanted = [
            StreamConfig(name=names.jobs_stream, subjects=[names.jobs_filter],
                         retention=RetentionPolicy.WORK_QUEUE, storage=StorageType.FILE,
                         duplicate_window=window, num_replicas=settings.replicas,
                         description="ds-triton-client jobs (work queue)"),
            StreamConfig(name=names.results_stream, subjects=[names.results_filter],
                         retention=RetentionPolicy.LIMITS, storage=StorageType.FILE,
                         duplicate_window=window, max_age=settings.results_max_age_s,
                         num_replicas=settings.replicas, description="ds-triton-client results"),
            StreamConfig(name=names.dead_stream, subjects=[names.dead_subject],
                         retention=RetentionPolicy.LIMITS, storage=StorageType.FILE,
                         duplicate_window=window, max_age=settings.dead_max_age_s,
                         num_replicas=settings.replicas, description="ds-triton-client dead letters"),
        ]  # fmt: skip
        for config in wanted:
            try:
                await self._js.stream_info(str(config.name))
            except nats.js.errors.NotFoundError:
                # BadRequest: created by another process meanwhile (or its subjects belong to another stream).
                with contextlib.suppress(nats.js.errors.BadRequestError):
                    await self._js.add_stream(config)
            except _TRANSIENT as exc:
                raise BrokerError(f"could not read stream {config.name}: {exc}") from None

    async def bind_worker(self, settings: ConsumerSettings) -> None:
        """Create (or update) the group's durable pull consumer and bind to it."""
        config = ConsumerConfig(
            durable_name=settings.durable,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=settings.ack_wait_s,
            max_deliver=-1,  # the worker counts attempts itself and dead-letters with the error
            max_ack_pending=settings.max_ack_pending,
            filter_subject=settings.filter_subject or self.names.jobs_filter,
        )
        try:
            await self._js.add_consumer(self.names.jobs_stream, config)
        except nats.js.errors.BadRequestError as exc:
            # It exists with settings that cannot change in place (e.g. another filter): use it as is.
            log.warning("using the existing consumer %s as it is: %s", settings.durable, exc)
        except _TRANSIENT as exc:
            raise BrokerError(f"could not create consumer {settings.durable}: {exc}") from None
        self._sub = await self._js.pull_subscribe_bind(settings.durable, self.names.jobs_stream)
        self._consumer = settings

    async def fetch(self, max_messages: int, wait_s: float) -> list[Delivery]:
        """What is there now (up to ``max_messages``), else the first job that arrives within ``wait_s``."""
        if self._sub is None:
            raise RuntimeError("bind_worker() first")
        if not self._surplus:
            try:
                self._surplus = await _pull(self._sub, max_messages, wait_s)
            except _TRANSIENT as exc:
                raise BrokerError(f"fetch failed: {exc}") from None
        # nats-py also returns what arrived late for an earlier pull that timed out on the
        # client, so a fetch can bring more than it asked for: the rest waits for the next call.
        taken, self._surplus = self._surplus[:max_messages], self._surplus[max_messages:]
        return [NatsDelivery(m) for m in taken]

    async def backlog(self, group: str | None = None) -> Backlog:
        """The lag of worker group ``group`` (default: the one this broker is bound to, else ``workers``)."""
        durable = group or (self._consumer.durable if self._consumer else ConsumerSettings.durable)
        try:
            info = await self._js.consumer_info(self.names.jobs_stream, durable, timeout=2)
        except _TRANSIENT as exc:
            raise BrokerError(f"consumer info failed: {exc}") from None
        return Backlog(
            pending=int(info.num_pending or 0),
            in_flight=int(info.num_ack_pending or 0),
            redelivered=int(info.num_redelivered or 0),
            waiting=int(info.num_waiting or 0),
        )

    # --- publishing ----------------------------------------------------------------------

    async def publish(
        self, subject: str, payload: bytes, dedup_id: str | None = None, timeout_s: float = 5.0
    ) -> None:
        headers = {"Nats-Msg-Id": dedup_id} if dedup_id else None
        try:
            await self._js.publish(subject, payload, timeout=timeout_s, headers=headers)
        except nats.js.errors.NoStreamResponseError:
            await self._check_routable(subject)
            raise BrokerError(f"no stream answered for {subject} (JetStream not ready?)") from None
        except _TRANSIENT as exc:
            raise BrokerError(f"publish to {subject} failed: {exc}") from None
        self._routable.add(subject)

    async def _check_routable(self, subject: str) -> None:
        """Raise ``UnroutableError`` only when JetStream itself says no stream stores ``subject``.

        A publish also finds no responder while a restarted server is still loading its
        streams, so "no responders" alone never makes a job invalid.
        """
        if subject in self._routable:
            return
        try:
            found = await self._js.find_stream_name_by_subject(subject)
        except nats.js.errors.NotFoundError:
            raise UnroutableError(f"no JetStream stream stores subject {subject!r}") from None
        except _TRANSIENT:
            return
        if found:
            self._routable.add(subject)

    # --- replaying results ---------------------------------------------------------------

    async def replay(self, subject: str, idle_check_s: float = 2.0) -> AsyncGenerator[list[bytes], None]:
        """Every message stored on ``subject`` (results, dead letters), from the first, then live ones.

        One batch per fetch, an empty one after a second without messages. An ephemeral
        consumer reads from just after the last yielded message; it is made again after
        a disconnect or a server restart, so nothing is skipped.
        """
        last_seq = 0
        stream = ""
        while True:
            sub = None
            try:
                stream = stream or await self._js.find_stream_name_by_subject(subject)
                config = ConsumerConfig(
                    ack_policy=AckPolicy.NONE,
                    filter_subject=subject,
                    deliver_policy=DeliverPolicy.BY_START_SEQUENCE if last_seq else DeliverPolicy.ALL,
                    opt_start_seq=last_seq + 1 if last_seq else None,
                    inactive_threshold=60.0,
                    mem_storage=True,
                )
                info = await self._js.add_consumer(stream, config)
                sub = await self._js.pull_subscribe_bind(info.name, stream)
                idle = 0.0
                while True:
                    msgs = await _pull(sub, 512, 1.0)
                    if not msgs:
                        yield []
                        idle += 1.0
                        if idle >= idle_check_s:
                            idle = 0.0
                            # Gone after a server restart? Then this raises and the consumer is made again.
                            await self._js.consumer_info(stream, info.name, timeout=2)
                        continue
                    idle = 0.0
                    last_seq = int(msgs[-1].metadata.sequence.stream)
                    yield [bytes(m.data) for m in msgs]
            except _TRANSIENT as exc:
                log.warning("reading %s: %s; reading again after sequence %d", subject, exc, last_seq)
                yield []
                await asyncio.sleep(0.5)
            finally:
                if sub is not None:
                    with contextlib.suppress(Exception):
                        await sub.unsubscribe()

    @staticmethod
    def _buffered_jobs(queue: Any) -> list[Msg]:
        """Jobs that reached nats-py for a pull already over (its pull subscription's queue, where
        ``pending_msgs`` counts them); without this they would wait out ``ack_wait`` at the broker."""
        jobs: list[Msg] = []
        while queue is not None and not queue.empty():
            msg = queue.get_nowait()
            if not JetStreamContext.is_status_msg(msg):  # 404/408 answers to pulls are not jobs
                jobs.append(msg)
        return jobs

    async def close(self) -> None:
        """Hand back jobs delivered but never started, flush (acknowledgements included), close.

        A pull that timed out on this side may still be open on the server, which can deliver
        to it until its own expiry: so the inbox goes first (the server drops a pull whose inbox
        has no interest), and what arrived before the server saw that, up to a flush's
        round trip, is handed back with the rest.
        """
        self._closing.set()
        queue = getattr(getattr(self._sub, "_sub", None), "_pending_queue", None)
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            with contextlib.suppress(Exception):
                await self._nc.flush(timeout=5)
        unstarted = [*self._surplus, *self._buffered_jobs(queue)]
        for msg in unstarted:
            with contextlib.suppress(Exception):
                await msg.nak()
        self._surplus = []
        if unstarted:
            # JetStream counts a handed-back job as unacknowledged until it is delivered again,
            # so this line is what tells an operator why the group's ack-pending count is not 0.
            log.info("handed back %d job(s) delivered but never started", len(unstarted))
        with contextlib.suppress(Exception):
            await self._nc.flush(timeout=5)
        with contextlib.suppress(Exception):
            await self._nc.close()


async def _pull(sub: Any, max_messages: int, wait_s: float) -> list[Msg]:
    """Up to ``max_messages`` that are there now, else the first to arrive within ``wait_s`` ([] if none).

    nats-py's ``fetch(n)`` returns a lone message only when its whole wait is over, which
    would hold a job arriving at an idle worker (or a result at a waiting collector) for
    ``wait_s``; so a short probe for a batch comes first, then a wait for one message,
    which returns as soon as it is there.
    """
    with contextlib.suppress(TimeoutError, nats.errors.TimeoutError):
        if max_messages > 1:
            msgs: list[Msg] = await sub.fetch(max_messages, timeout=PROBE_S)
            if msgs:
                return msgs
        return list(await sub.fetch(1, timeout=wait_s))
    return []
