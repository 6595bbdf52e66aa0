"""Active health checks: probe ``/v2/health/ready`` and watched models on an interval.

A probe that passes takes an ejected endpoint back at once; one that fails keeps
it out of rotation until a later probe passes. The sync checker owns a thread,
the async one a task; both are stopped and joined by the client's close.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ds_triton_client.balancer import Balancer
from ds_triton_client.endpoints import Endpoint
from ds_triton_client.options import ClientOptions
from ds_triton_client.transport.base import AsyncTransport, Op, SyncTransport, model_ready, server_ready


def _probes(models: frozenset[str]) -> list[tuple[Op[bool], str]]:
    """What to ask, in order, and the reason to report when the answer is no."""
    return [(server_ready(), "server not ready")] + [
        (model_ready(model), f"model {model!r} not ready") for model in sorted(models)
    ]


def probe_sync(transport: SyncTransport, models: frozenset[str], timeout: float) -> str | None:
    """None when the server and every model are ready, else the reason."""
    for op, reason in _probes(models):
        try:
            if not transport.call(op, timeout):
                return reason
        except Exception:  # any failure means not ready; the health thread must go on
            return reason
    return None


async def probe_async(transport: AsyncTransport, models: frozenset[str], timeout: float) -> str | None:
    """The asyncio twin of ``probe_sync``."""
    for op, reason in _probes(models):
        try:
            if not await transport.call(op, timeout):
                return reason
        except Exception:
            return reason
    return None


class _Checker:
    """What both checkers hold: whom to probe, which models, how often, how long to wait."""

    def __init__(
        self,
        balancer: Balancer,
        transports: Mapping[Endpoint, Any],
        models: Callable[[], frozenset[str]],
        options: ClientOptions,
    ) -> None:
        self._balancer = balancer
        self._transports = transports
        self._models = models
        self._interval = options.health_interval
        self._timeout = options.health_timeout

    def _record(self, endpoints: Iterable[Endpoint], reasons: Iterable[str | None]) -> None:
        for endpoint, reason in zip(endpoints, reasons, strict=True):
            self._balancer.set_health(endpoint, reason is None, reason)


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
