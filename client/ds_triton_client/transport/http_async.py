"""asyncio HTTP(S) transport: the shared HTTP codec over a bounded aiohttp session.

aiohttp (a tritonclient[http] dependency) gives per-call total timeouts and
streams the ``generate_stream`` SSE body, which tritonclient.http.aio cannot.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Any, TypeVar, cast

import aiohttp

from ds_triton_client import errors
from ds_triton_client.inflight import Abort
from ds_triton_client.sse import SSEParser
from ds_triton_client.transport import http_common as http
from ds_triton_client.transport.base import GenerationCall, Op

T = TypeVar("T")


class HttpAsyncTransport(http.HttpTransportBase):
    """One endpoint with at most ``options.pool_size`` connections; the session opens in the loop."""

    _session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            size = self._options.pool_size
            connector = aiohttp.TCPConnector(limit=size, limit_per_host=size, ssl=self._ssl or True)
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    @contextlib.asynccontextmanager
    async def _send(self, request: http.HttpRequest, timeout: float) -> AsyncIterator[aiohttp.ClientResponse]:
        """The 200 response of ``request`` (any other status is raised as a typed error)."""
        self._guard(timeout)
        url = f"{self.endpoint.scheme}://{self.endpoint.address}{request.path}"
        try:
            async with self._client().request(
                request.method,
                url,
                data=request.body,
                headers=dict(request.headers),
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as response:
                if response.status != 200:
                    raise http.http_error(response.status, await response.read(), self.endpoint.url)
                yield response
        except errors.ClientError:
            raise
        except Exception as exc:
            raise errors.map_error(exc, self.endpoint.url) from exc

    async def call(self, op: Op[T], timeout: float) -> T:
        async with self._send(http.encode(op, self._options), timeout) as response:
            return cast(T, http.decode(op, await response.read(), response.headers))

    async def generate(
        self, call: GenerationCall, timeout: float, abort: Abort | None = None
    ) -> AsyncGenerator[Mapping[str, Any], None]:
        """The one JSON answer of ``/generate``, or each event of ``/generate_stream``."""
        async with self._send(http.generate_request(call, self._options), timeout) as response:
            if abort is not None:
                abort.bind(response.close)
            if not call.stream:
                yield http.generate_answer(await response.read())
                return
            parser = SSEParser()
            async for chunk in response.content.iter_any():
                for event in self._events(parser, chunk):
                    yield event
            for event in self._events(parser, None):
                yield event

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
