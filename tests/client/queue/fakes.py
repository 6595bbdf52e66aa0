"""In-memory stand-ins for the broker and the inference client (unit tests of the worker's logic only;
the broker and Triton themselves are tested for real in the server tests beside these)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ds_triton_client.codec import GenerationResult
from ds_triton_client.queue.broker import Backlog, BrokerError, QueueNames, UnroutableError


@dataclass
class FakeDelivery:
    broker: FakeBroker
    data: bytes
    attempt: int = 1
    settled: str | None = None
    retry_delay: float | None = None
    extended: int = 0

    async def ack(self) -> None:
        self._settle("ack")

    async def retry_later(self, delay_s: float) -> None:
        self._settle("retry")
        self.retry_delay = delay_s
        self.broker.queue.append(FakeDelivery(self.broker, self.data, self.attempt + 1))

    async def release(self) -> None:
        self._settle("release")
        self.broker.queue.append(FakeDelivery(self.broker, self.data, self.attempt + 1))

    async def still_working(self) -> None:
        self.extended += 1

    def _settle(self, how: str) -> None:
        assert self.settled is None, f"settled twice: {self.settled} then {how}"
        self.settled = how
        self.broker.settled.append(self)


@dataclass
class FakeBroker:
    """Jobs in a list; publishes recorded per subject with broker-side deduplication by id."""

    names: QueueNames = field(default_factory=QueueNames)
    queue: list[FakeDelivery] = field(default_factory=list)
    published: dict[str, list[bytes]] = field(default_factory=dict)
    settled: list[FakeDelivery] = field(default_factory=list)
    unroutable: set[str] = field(default_factory=set)
    failing_publishes: int = 0
    seen_ids: set[str] = field(default_factory=set)
    fetch_sizes: list[int] = field(default_factory=list)
    closed: bool = False

    def add(self, *payloads: bytes) -> None:
        self.queue += [FakeDelivery(self, p) for p in payloads]

    async def fetch(self, max_messages: int, wait_s: float) -> list[FakeDelivery]:
        self.fetch_sizes.append(max_messages)
        taken, self.queue = self.queue[:max_messages], self.queue[max_messages:]
        if not taken:
            await asyncio.sleep(min(wait_s, 0.01))
        return taken

    async def publish(self, subject: str, payload: bytes, dedup_id: str | None = None) -> None:
        if subject in self.unroutable:
            raise UnroutableError(f"no stream stores {subject}")
        if self.failing_publishes:
            self.failing_publishes -= 1
            raise BrokerError("disconnected")
        if dedup_id is not None:
            if dedup_id in self.seen_ids:
                return
            self.seen_ids.add(dedup_id)
        self.published.setdefault(subject, []).append(payload)

    async def backlog(self) -> Backlog:
        return Backlog(len(self.queue), 0, 0, 0)

    async def replay(self, subject: str) -> AsyncGenerator[list[bytes], None]:
        sent = 0
        while True:
            messages = self.published.get(subject, [])
            yield list(messages[sent:])
            sent = len(messages)
            await asyncio.sleep(0)

    async def close(self) -> None:
        self.closed = True


@dataclass
class FakeClient:
    """Embeds text i as a vector of its length; fails according to ``failures`` (text -> errors to raise)."""

    failures: dict[str, list[BaseException]] = field(default_factory=dict)
    delay_s: float = 0.0
    calls: list[Any] = field(default_factory=list)

    async def embed(self, texts: Any, model: str = "", timeout: float | None = None) -> np.ndarray:
        self.calls.append(("embed", list(texts), model, timeout))
        await self._maybe_fail(texts[0])
        return np.array([[len(t), 1.0, -1.0] for t in texts], dtype=np.float32)

    async def generate(self, prompt: str, model: str = "", timeout: float | None = None,
                       **sampling: Any) -> GenerationResult:  # fmt: skip
        self.calls.append(("generate", prompt, model, sampling))
        await self._maybe_fail(prompt)
        return GenerationResult(prompt.upper(), 3, 4, "length")

    async def _maybe_fail(self, key: str) -> None:
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        errors = self.failures.get(key)
        if errors:
            raise errors.pop(0)
