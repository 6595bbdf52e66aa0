"""The asyncio client: same calls as ``Client``, awaited (``stream`` is an async iterator)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar

import numpy as np

from ds_triton_client._base import DEFAULT_EMBED_MODEL, DEFAULT_GENERATE_MODEL, BaseClient
from ds_triton_client.codec import (
    EMBED_OUTPUT,
    GenerationResult,
    chunk_bounds,
    combine_pieces,
    embedding_inputs,
    embedding_output,
    generation_fields,
    generation_piece,
    normalize_stats,
)
from ds_triton_client.concurrency import gather_bounded
from ds_triton_client.endpoints import Endpoint
from ds_triton_client.errors import ClientError, DeadlineExceededError
from ds_triton_client.health import AsyncHealthChecker, probe_async
from ds_triton_client.model_info import ModelInfo
from ds_triton_client.options import ClientOptions, Protocol
from ds_triton_client.retry import Deadline
from ds_triton_client.transport import AsyncTransport, make_async_transport

T = TypeVar("T")
AsyncOperation = Callable[[AsyncTransport, float], Awaitable[T]]


class AsyncClient(BaseClient):
    """asyncio client over one or more Triton endpoints (see ``BaseClient`` for arguments).

    Use ``async with AsyncClient(...) as client`` or ``await client.aclose()``.
    The health-check task starts with the first call, inside the running loop.
    """

    def __init__(
        self,
        urls: str | Sequence[str],
        *,
        options: ClientOptions | None = None,
        protocol: Protocol | None = None,
        models: Iterable[str] = (),
        **overrides: Any,
    ) -> None:
        super().__init__(urls, options=options, protocol=protocol, models=models, **overrides)
        self._transports: dict[Endpoint, AsyncTransport] = {
            e: make_async_transport(e, self.options) for e in self.endpoints
        }
        self._slots: asyncio.Semaphore | None = None
        self._health = AsyncHealthChecker(
            self._balancer,
            self._transports,
            lambda: self.watched_models,
            self.options.health_interval,
            self.options.health_timeout,
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

    async def _call(self, operation: AsyncOperation[T], deadline: Deadline, model: str | None = None) -> T:
        """Run ``operation`` on the best endpoint, failing over and backing off as allowed."""
        tried: list[Endpoint] = []
        last: ClientError | None = None
        for attempt in range(1, self._retry.max_attempts + 1):
            if deadline.expired():
                raise self._deadline_error(deadline, attempt - 1, last)
            state = self._balancer.acquire(avoid=tried)
            try:
                async with self._slot(deadline):
                    # wait_for enforces the deadline even where a transport cannot.
                    result = await asyncio.wait_for(
                        operation(self._transports[state.endpoint], deadline.remaining()),
                        deadline.remaining(),
                    )
            except asyncio.CancelledError:
                self._balancer.release(state)
                raise
            except Exception as exc:
                last, backoff = self._settle_failure(state, exc, attempt, tried, deadline)
                await asyncio.sleep(backoff)
                continue
            self._settle_success(state, model)
            return result
        raise last if last else self._deadline_error(deadline, 0, None)

    async def model_info(self, model: str, timeout: float | None = None) -> ModelInfo:
        """The model's batching and output facts, read once from its config."""
        if model not in self._model_info:
            config = await self._call(lambda t, left: t.model_config(model, left), self._deadline(timeout))
            self._model_info[model] = ModelInfo.from_config(config)
        return self._model_info[model]

    async def embed(
        self, texts: Sequence[str], model: str = DEFAULT_EMBED_MODEL, timeout: float | None = None
    ) -> np.ndarray:
        """Embed ``texts``; float32 ``(len(texts), dim)`` in input order (see ``Client.embed``)."""
        if isinstance(texts, str):
            texts = [texts]
        deadline = self._deadline(timeout)
        info = await self.model_info(model, deadline.remaining())
        if not texts:
            return np.zeros((0, self._embedding_dim(info)), dtype=np.float32)
        embedding_inputs(texts)
        bounds = chunk_bounds(len(texts), info.rows_per_request)

        async def run(bound: tuple[int, int]) -> np.ndarray:
            chunk = texts[bound[0] : bound[1]]
            outputs = await self._call(
                lambda t, left: t.infer(model, embedding_inputs(chunk), [EMBED_OUTPUT], left), deadline, model
            )
            return embedding_output(outputs, len(chunk))

        parts = await gather_bounded(run, bounds, self.options.max_concurrency)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    async def generate(
        self, prompt: str, model: str = DEFAULT_GENERATE_MODEL, timeout: float | None = None, **sampling: Any
    ) -> GenerationResult:
        """Generate a completion of ``prompt`` (see ``Client.generate``)."""
        deadline = self._deadline(timeout)
        fields = generation_fields(prompt, False, sampling)
        batched = (await self.model_info(model, deadline.remaining())).max_batch_size > 0

        async def run(transport: AsyncTransport, left: float) -> GenerationResult:
            pieces = [generation_piece(o) async for o in transport.generate(model, fields, batched, left)]
            return combine_pieces(pieces, str(getattr(transport, "endpoint", "")) or None)

        return await self._call(run, deadline, model)

    async def stream(
        self, prompt: str, model: str = DEFAULT_GENERATE_MODEL, timeout: float | None = None, **sampling: Any
    ) -> AsyncGenerator[str, None]:
        """Yield generated text pieces as they arrive (see ``Client.stream``)."""
        deadline = self._deadline(timeout)
        fields = generation_fields(prompt, True, sampling)
        batched = (await self.model_info(model, deadline.remaining())).max_batch_size > 0
        tried: list[Endpoint] = []
        last: ClientError | None = None
        for attempt in range(1, self._retry.max_attempts + 1):
            if deadline.expired():
                raise self._deadline_error(deadline, attempt - 1, last)
            state = self._balancer.acquire(avoid=tried)
            started = False
            responses = self._transports[state.endpoint].generate(
                model, fields, batched, deadline.remaining()
            )
            try:
                async with self._slot(deadline):
                    async for outputs in responses:
                        piece = generation_piece(outputs)
                        if piece.text:
                            started = True
                            yield piece.text
            except (GeneratorExit, asyncio.CancelledError):
                self._balancer.release(state)
                raise
            except Exception as exc:
                last, backoff = self._settle_failure(state, exc, attempt, tried, deadline, started)
                await asyncio.sleep(backoff)
                continue
            finally:
                await responses.aclose()
            self._settle_success(state, model)
            return
        if last:
            raise last

    async def health(self) -> list[dict[str, object]]:
        """Probe every endpoint now; each entry: endpoint, ready, reason, and balancer state."""
        report = []
        for state in self._balancer.snapshot():
            endpoint = next(e for e in self.endpoints if e.url == state["endpoint"])
            reason = await probe_async(
                self._transports[endpoint], self.watched_models, self.options.health_timeout
            )
            self._balancer.set_health(endpoint, reason is None, reason)
            report.append({**state, "ready": reason is None, "reason": reason})
        return report

    async def ready(self, model: str) -> bool:
        """Whether at least one endpoint has ``model`` ready."""
        timeout = self.options.health_timeout
        for transport in self._transports.values():
            if await transport.server_ready(timeout) and await transport.model_ready(model, timeout):
                return True
        return False

    async def models(self, timeout: float | None = None) -> list[dict[str, Any]]:
        """The model repository index (name, version, state) of a healthy endpoint."""
        return await self._call(lambda t, left: t.models(left), self._deadline(timeout))

    async def stats(self, model: str, timeout: float | None = None) -> dict[str, dict[str, Any]]:
        """Inference statistics of ``model`` per reachable endpoint URL (counters as ints)."""
        deadline = self._deadline(timeout)
        found: dict[str, dict[str, Any]] = {}
        errors: list[ClientError] = []
        for endpoint, transport in self._transports.items():
            try:
                found[endpoint.url] = normalize_stats(await transport.stats(model, deadline.remaining()))
            except ClientError as exc:
                errors.append(exc)
        if not found and errors:
            raise errors[0]
        return found

    async def aclose(self) -> None:
        """Cancel the health task and close every connection pool."""
        await self._health.stop()
        for transport in self._transports.values():
            await transport.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
