"""Active health checks: probe ``/v2/health/ready`` and watched models on an interval.

A probe that passes takes an ejected endpoint back at once; one that fails keeps
it out of rotation until a later probe passes. The sync checker owns a thread,
the async one a task; both are stopped and joined by the client's close.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Mapping

from ds_triton_client.balancer import Balancer
from ds_triton_client.endpoints import Endpoint
from ds_triton_client.transport.base import AsyncTransport, SyncTransport


def probe_sync(transport: SyncTransport, models: frozenset[str], timeout: float) -> str | None:
    """None when the server and every model are ready, else the reason."""
    if not transport.server_ready(timeout):
        return "server not ready"
    for model in sorted(models):
        if not transport.model_ready(model, timeout):
            return f"model {model!r} not ready"
    return None


async def probe_async(transport: AsyncTransport, models: frozenset[str], timeout: float) -> str | None:
    """The asyncio twin of ``probe_sync``."""
    if not await transport.server_ready(timeout):
        return "server not ready"
    for model in sorted(models):
        if not await transport.model_ready(model, timeout):
            return f"model {model!r} not ready"
    return None


class SyncHealthChecker:
    """Probes every endpoint each ``interval`` seconds on one thread."""

    def __init__(
        self,
        balancer: Balancer,
        transports: Mapping[Endpoint, SyncTransport],
        models: Callable[[], frozenset[str]],
        interval: float,
        timeout: float,
    ) -> None:
        self._balancer = balancer
        self._transports = transports
        self._models = models
        self._interval = interval
        self._timeout = timeout
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check_now(self) -> None:
        for endpoint, transport in self._transports.items():
            reason = probe_sync(transport, self._models(), self._timeout)
            self._balancer.set_health(endpoint, reason is None, reason)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="ds-triton-health", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.check_now()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None


class AsyncHealthChecker:
    """Probes every endpoint each ``interval`` seconds in one task of the client's loop."""

    def __init__(
        self,
        balancer: Balancer,
        transports: Mapping[Endpoint, AsyncTransport],
        models: Callable[[], frozenset[str]],
        interval: float,
        timeout: float,
    ) -> None:
        self._balancer = balancer
        self._transports = transports
        self._models = models
        self._interval = interval
        self._timeout = timeout
        self._task: asyncio.Task[None] | None = None

    async def check_now(self) -> None:
        endpoints = list(self._transports)
        reasons = await asyncio.gather(
            *(probe_async(self._transports[e], self._models(), self._timeout) for e in endpoints)
        )
        for endpoint, reason in zip(endpoints, reasons, strict=True):
            self._balancer.set_health(endpoint, reason is None, reason)

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
