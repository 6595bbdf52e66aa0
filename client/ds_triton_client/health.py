"""Active health checks: probe ``/v2/health/ready`` and watched models on an interval.

A probe that passes takes an ejected endpoint back at once; one that fails keeps
it out of rotation until a later probe passes. The sync checker owns a thread,
the async one a task; both are stopped and joined by the client's close.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ds_triton_client.balancer import Balancer
from ds_triton_client.endpoints import Endpoint
from ds_triton_client.inflight import InFlightRegistry
from ds_triton_client.options import ClientOptions
from ds_triton_client.transport.base import AsyncTransport, Op, SyncTransport, model_ready, server_ready


@dataclass(frozen=True)
class Probe:
    """One endpoint's answer to a health check.

    Attributes:
        reason: Why the endpoint is not ready (the first failing check); None when it is.
        gone: Models the server answered "not ready" for. A probe that failed or timed
            out proves nothing about a model, so those are not listed.
    """

    reason: str | None = None
    gone: tuple[str, ...] = ()


class _Walk:
    """The checks of one probe, without I/O: iterate to get each question, ``answer`` each.

    The server is asked first; when it is not ready its models are not asked. Every
    model is asked even after one fails, so each vanished one is known.
    """

    def __init__(self, models: frozenset[str]) -> None:
        self._steps: list[tuple[Op[bool], str, str | None]] = [
            (server_ready(), "server not ready", None)
        ] + [(model_ready(model), f"model {model!r} not ready", model) for model in sorted(models)]
        self._answers: list[bool | None] = []

    def __iter__(self) -> Iterator[Op[bool]]:
        for op, _, model in self._steps:
            yield op
            if model is None and not self._answers[-1]:
                return

    def answer(self, ok: bool | None) -> None:
        """True/False as the server answered, None when the check itself failed."""
        self._answers.append(ok)

    def verdict(self) -> Probe:
        asked = list(zip(self._steps, self._answers, strict=False))
        reasons = [reason for (_, reason, _), ok in asked if not ok]
        gone = tuple(model for (_, _, model), ok in asked if ok is False and model is not None)
        return Probe(reasons[0] if reasons else None, gone)


def probe_sync(transport: SyncTransport, models: frozenset[str], timeout: float) -> Probe:
    """Whether the server and each of ``models`` is ready on ``transport``'s endpoint."""
    walk = _Walk(models)
    for op in walk:
        try:
            walk.answer(bool(transport.call(op, timeout)))
        except Exception:  # any failure means not ready; the health thread must go on
            walk.answer(None)
    return walk.verdict()


async def probe_async(transport: AsyncTransport, models: frozenset[str], timeout: float) -> Probe:
    """The asyncio twin of ``probe_sync``."""
    walk = _Walk(models)
    for op in walk:
        try:
            answer: bool = await transport.call(op, timeout)
            walk.answer(bool(answer))
        except Exception:
            walk.answer(None)
    return walk.verdict()


class _Checker:
    """What both checkers hold: whom to probe, which models, how often, how long to wait."""

    def __init__(
        self,
        balancer: Balancer,
        transports: Mapping[Endpoint, Any],
        models: Callable[[], frozenset[str]],
        options: ClientOptions,
        inflight: InFlightRegistry | None = None,
    ) -> None:
        self._balancer = balancer
        self._inflight = inflight
        self._transports = transports
        self._models = models
        self._interval = options.health_interval
        self._timeout = options.health_timeout

    def _record(self, endpoints: Iterable[Endpoint], probes: Iterable[Probe]) -> None:
        for endpoint, probe in zip(endpoints, probes, strict=True):
            self._balancer.set_health(endpoint, probe.reason is None, probe.reason)
            if self._inflight is not None:
                for model in probe.gone:
                    self._inflight.model_gone(endpoint, model, "health check")


class SyncHealthChecker(_Checker):
    """Probes every endpoint each ``health_interval`` seconds on one thread."""

    _transports: Mapping[Endpoint, SyncTransport]
    _thread: threading.Thread | None = None

    def check_now(self) -> None:
        endpoints = list(self._transports)
        self._record(
            endpoints, [probe_sync(self._transports[e], self._models(), self._timeout) for e in endpoints]
        )

    def start(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ds-triton-health", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.check_now()

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None


class AsyncHealthChecker(_Checker):
    """Probes every endpoint each ``health_interval`` seconds in one task of the client's loop."""

    _transports: Mapping[Endpoint, AsyncTransport]
    _task: asyncio.Task[None] | None = None

    async def check_now(self) -> None:
        endpoints = list(self._transports)
        models = self._models()
        self._record(
            endpoints,
            await asyncio.gather(
                *(probe_async(self._transports[e], models, self._timeout) for e in endpoints)
            ),
        )

    def ensure_started(self) -> None:
        """Start the task if it is not running (needs a running loop)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="ds-triton-health")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.check_now()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
