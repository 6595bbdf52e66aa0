"""The asyncio client: same calls as ``Client``, awaited (``stream`` is an async iterator)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import numpy as np

from ds_triton_client._base import DEFAULT_EMBED_MODEL, DEFAULT_GENERATE_MODEL, BaseClient
from ds_triton_client.codec import GenerationPiece, GenerationResult, generation_piece
from ds_triton_client.concurrency import gather_bounded
from ds_triton_client.endpoints import Endpoint
from ds_triton_client.errors import ClientError, DeadlineExceededError, PermissionDeniedError
from ds_triton_client.health import AsyncHealthChecker, probe_async
from ds_triton_client.inflight import Abort, InFlight
from ds_triton_client.model_info import ModelInfo
from ds_triton_client.options import ClientOptions
from ds_triton_client.retry import Deadline
from ds_triton_client.transport import AsyncTransport, make_async_transport
from ds_triton_client.transport.base import model_config, model_metadata, repository_index, statistics

T = TypeVar("T")
AsyncOperation = Callable[[AsyncTransport, float], Awaitable[T]]
AsyncOpener = Callable[[AsyncTransport, float, Abort], AsyncGenerator[T, None]]


class AsyncClient(BaseClient):
    """asyncio client over one or more Triton endpoints (see ``BaseClient`` for arguments).

    Use ``async with AsyncClient(...) as client`` or ``await client.aclose()``.
    The health-check task starts with the first call, inside the running loop.
    """

    _transports: dict[Endpoint, AsyncTransport]

    def _make_transport(self, endpoint: Endpoint, options: ClientOptions) -> AsyncTransport:
        return make_async_transport(endpoint, options)

    def _setup(self) -> None:
        self._slots: asyncio.Semaphore | None = None
        self._health = AsyncHealthChecker(
            self._balancer, self._transports, lambda: self.watched_models, self.options, self._inflight
        )

    def _start(self) -> asyncio.Semaphore:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.options.max_concurrency)
        if self.options.health_interval > 0:
            self._health.ensure_started()
        return self._slots

    @contextlib.asynccontextmanager
    async def _slot(self, deadline: Deadline) -> AsyncIterator[None]:
        slots = self._start()
        try:
            await asyncio.wait_for(slots.acquire(), deadline.remaining())
        except TimeoutError:
            raise DeadlineExceededError("deadline passed waiting for a free request slot") from None
        try:
            yield
        finally:
            slots.release()

    # --- the one I/O loop: attempts over endpoints ---------------------------------------

    async def _run(
        self, open_items: AsyncOpener[T], deadline: Deadline, model: str | None = None
    ) -> AsyncGenerator[T, None]:
        """Yield the items of the first attempt that succeeds (see ``Client._run``).

        Each wait for the next item is bounded by the deadline, even where a
        transport cannot bound it itself.
        """
        failover = self._failover(deadline, model)
        while True:
            state = failover.next_endpoint()
            started = False
            with self._inflight.track(state.endpoint, model or "") as call:
                items = open_items(self._transports[state.endpoint], deadline.remaining(), call.abort)
                try:
                    async with self._slot(deadline):
                        while True:
                            try:
                                async with asyncio.timeout(deadline.remaining()):
                                    item = await anext(items)
                            except StopAsyncIteration:
                                break
                            started = True
                            call.heard()
                            yield item
                except (GeneratorExit, asyncio.CancelledError) as exc:
                    if not _ended_by_abort(call, exc):
                        failover.abandoned(state)
                        raise
                    delay = failover.failed(state, self._vanished(call, exc), started)
                except Exception as exc:
                    delay = failover.failed(state, self._vanished(call, exc), started)
                else:
                    failover.succeeded(state)
                    return
                finally:
                    await items.aclose()
            await asyncio.sleep(delay)

    async def _call(self, operation: AsyncOperation[T], deadline: Deadline, model: str | None = None) -> T:
        """Run one request-response ``operation`` with failover."""

        async def once(transport: AsyncTransport, left: float, abort: Abort) -> AsyncGenerator[T, None]:
            yield await operation(transport, left)

        results = [item async for item in self._run(once, deadline, model)]
        return results[0]

    # --- model facts ---------------------------------------------------------------------

    async def model_info(self, model: str, timeout: float | None = None) -> ModelInfo:
        """The model's batching and output facts (see ``Client.model_info``)."""
        self._check_open()

        async def describe(transport: AsyncTransport, left: float) -> ModelInfo:
            try:
                config = await transport.call(model_config(model), left)
            except PermissionDeniedError:
                return ModelInfo.from_metadata(await transport.call(model_metadata(model), left))
            return ModelInfo.from_config(config)

        if model not in self._model_info:
            self._model_info[model] = await self._call(describe, self._deadline(timeout))
        return self._model_info[model]

    # --- calls ---------------------------------------------------------------------------

    async def embed(
        self, texts: Sequence[str], model: str = DEFAULT_EMBED_MODEL, timeout: float | None = None
    ) -> np.ndarray:
        """Embed ``texts``; float32 ``(len(texts), dim)`` in input order (see ``Client.embed``)."""
        if isinstance(texts, str):
            texts = [texts]
        deadline = self._deadline(timeout)
        info = await self.model_info(model, deadline.remaining())
        chunks = self._embed_chunks(texts, info)

        async def run(chunk: Sequence[str]) -> np.ndarray:
            op = self._embed_op(model, chunk)
            answer = await self._call(lambda t, left: t.call(op, left), deadline, model)
            return self._embed_result(answer, chunk)

        return self._join_embeddings(await gather_bounded(run, chunks, self.options.max_concurrency), info)

    async def generate(
        self, prompt: str, model: str = DEFAULT_GENERATE_MODEL, timeout: float | None = None, **sampling: Any
    ) -> GenerationResult:
        """Generate a completion of ``prompt`` (see ``Client.generate``)."""
        fields = self._generation_fields(prompt, False, sampling)
        deadline = self._deadline(timeout)
        call = self._generation_call(model, fields, await self.model_info(model, deadline.remaining()))

        async def run(
            transport: AsyncTransport, left: float, abort: Abort
        ) -> AsyncGenerator[GenerationResult, None]:
            responses = [o async for o in transport.generate(call, left, abort)]
            yield self._generation_result(responses, transport.endpoint)

        results = [result async for result in self._run(run, deadline, model)]
        return results[0]

    async def stream(
        self, prompt: str, model: str = DEFAULT_GENERATE_MODEL, timeout: float | None = None, **sampling: Any
    ) -> AsyncGenerator[str, None]:
        """Yield generated text pieces as they arrive (see ``Client.stream``)."""
        pieces = self.stream_pieces(prompt, model, timeout, **sampling)
        try:
            async for piece in pieces:
                if piece.text:
                    yield piece.text
        finally:
            await pieces.aclose()

    async def stream_pieces(
        self, prompt: str, model: str = DEFAULT_GENERATE_MODEL, timeout: float | None = None, **sampling: Any
    ) -> AsyncGenerator[GenerationPiece, None]:
        """Yield every streamed response as a ``GenerationPiece`` (see ``Client.stream_pieces``)."""
        fields = self._generation_fields(prompt, True, sampling)
        deadline = self._deadline(timeout)
        call = self._generation_call(model, fields, await self.model_info(model, deadline.remaining()))

        async def pieces(
            transport: AsyncTransport, left: float, abort: Abort
        ) -> AsyncGenerator[GenerationPiece, None]:
            responses = transport.generate(call, left, abort)
            try:
                async for outputs in responses:
                    yield generation_piece(outputs)
            finally:
                await responses.aclose()

        async for piece in self._run(pieces, deadline, model):
            yield piece

    async def health(self) -> list[dict[str, object]]:
        """Probe every endpoint now; each entry: endpoint, ready, reason, and balancer state."""
        self._check_open()
        timeout = self.options.health_timeout
        endpoints = list(self._transports)
        reasons = await asyncio.gather(
            *(probe_async(self._transports[e], self.watched_models, timeout) for e in endpoints)
        )
        return self._health_report(dict(zip(endpoints, reasons, strict=True)))

    async def ready(self, model: str) -> bool:
        """Whether at least one endpoint has ``model`` ready."""
        self._check_open()
        timeout = self.options.health_timeout
        for transport in self._transports.values():
            if (await probe_async(transport, frozenset([model]), timeout)).reason is None:
                return True
        return False

    async def models(self, timeout: float | None = None) -> list[dict[str, Any]]:
        """The model repository index (name, version, state) of a healthy endpoint."""
        return await self._call(lambda t, left: t.call(repository_index(), left), self._deadline(timeout))

    async def stats(self, model: str, timeout: float | None = None) -> dict[str, dict[str, Any]]:
        """Inference statistics of ``model`` per reachable endpoint URL (counters as ints)."""
        deadline = self._deadline(timeout)
        answers: dict[Endpoint, dict[str, Any] | ClientError] = {}
        for endpoint, transport in self._transports.items():
            try:
                answer = await transport.call(statistics(model), deadline.remaining())
                answers[endpoint] = answer
            except ClientError as exc:
                answers[endpoint] = exc
        return self._merge_stats(answers)

    async def aclose(self) -> None:
        """Cancel the health task and close every connection pool (idempotent)."""
        if self._closed:
            return
        self._closed = True
        await self._health.stop()
        for transport in self._transports.values():
            await transport.close()

    async def __aenter__(self) -> AsyncClient:
        self._check_open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _ended_by_abort(call: InFlight, exc: BaseException) -> bool:
    """Whether a cancellation came from the call's abort (grpc.aio raises CancelledError for
    a call cancelled locally), not from the caller cancelling this task."""
    task = asyncio.current_task()
    return (
        isinstance(exc, asyncio.CancelledError)
        and call.abort.reason is not None
        and (task is None or task.cancelling() == 0)
    )
