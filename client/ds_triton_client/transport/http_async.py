"""asyncio HTTP transport: tritonclient's body codec over a bounded aiohttp session.

aiohttp (a tritonclient[http] dependency) gives per-call total timeouts and
streams the ``generate_stream`` SSE body, which tritonclient.http.aio cannot.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any

import aiohttp

from ds_triton_client.codec import Tensor
from ds_triton_client.endpoints import Endpoint
from ds_triton_client.errors import ClientError, DeadlineExceededError, map_error
from ds_triton_client.options import ClientOptions
from ds_triton_client.sse import SSEParser
from ds_triton_client.transport.base import (
    HEADER_LENGTH,
    Fields,
    Outputs,
    decode_infer_body,
    encode_infer_body,
    generate_body,
    http_error,
    infer_path,
    sse_payload,
)


class HttpAsyncTransport:
    """One endpoint over HTTP with at most ``options.pool_size`` connections."""

    def __init__(self, endpoint: Endpoint, options: ClientOptions) -> None:
        self.endpoint = endpoint
        self._base = f"http://{endpoint.address}"
        self._pool_size = options.pool_size
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        # Created on first use: a session belongs to the running event loop.
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._pool_size, limit_per_host=self._pool_size)
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    async def _read(
        self,
        method: str,
        path: str,
        timeout: float,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[bytes, Mapping[str, str]]:
        if timeout <= 0:
            raise DeadlineExceededError("deadline passed before the request was sent", self.endpoint.url)
        try:
            async with self._client().request(
                method,
                self._base + path,
                data=body,
                headers=dict(headers or {}),
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as response:
                data = await response.read()
                if response.status != 200:
                    raise http_error(response.status, data, self.endpoint.url)
                return data, dict(response.headers)
        except ClientError:
            raise
        except Exception as exc:
            raise map_error(exc, self.endpoint.url) from exc

    async def _json(self, method: str, path: str, timeout: float, body: bytes | None = None) -> Any:
        data, _ = await self._read(method, path, timeout, body=body)
        return json.loads(data) if data else {}

    async def _ok(self, path: str, timeout: float) -> bool:
        try:
            await self._read("GET", path, timeout)
        except ClientError:
            return False
        return True

    async def server_ready(self, timeout: float) -> bool:
        return await self._ok("/v2/health/ready", timeout)

    async def model_ready(self, model: str, timeout: float) -> bool:
        return await self._ok(f"/v2/models/{model}/ready", timeout)

    async def model_config(self, model: str, timeout: float) -> dict[str, Any]:
        return dict(await self._json("GET", f"/v2/models/{model}/config", timeout))

    async def models(self, timeout: float) -> list[dict[str, Any]]:
        return list(await self._json("POST", "/v2/repository/index", timeout, body=b"{}"))

    async def stats(self, model: str, timeout: float) -> dict[str, Any]:
        return dict(await self._json("GET", f"/v2/models/{model}/stats", timeout))

    async def infer(
        self, model: str, inputs: Sequence[Tensor], outputs: Sequence[str], timeout: float
    ) -> Outputs:
        body, headers = encode_infer_body(inputs, outputs)
        data, answer_headers = await self._read(
            "POST", infer_path(model), timeout, body=body, headers=headers
        )
        return decode_infer_body(data, answer_headers.get(HEADER_LENGTH), outputs)

    async def generate(
        self, model: str, fields: Fields, batched: bool, timeout: float
    ) -> AsyncGenerator[Mapping[str, Any], None]:
        """``/generate`` (one answer) or ``/generate_stream`` (SSE) when ``fields['stream']``."""
        del batched  # the generate extension shapes inputs itself
        if not fields.get("stream"):
            body = generate_body(fields)
            yield dict(await self._json("POST", f"/v2/models/{model}/generate", timeout, body=body))
            return
        if timeout <= 0:
            raise DeadlineExceededError("deadline passed before the request was sent", self.endpoint.url)
        parser = SSEParser()
        try:
            async with self._client().post(
                f"{self._base}/v2/models/{model}/generate_stream",
                data=generate_body(fields),
                headers={"Content-Type": "application/json", "Accept": "text/event-stream"},
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as response:
                if response.status != 200:
                    raise http_error(response.status, await response.read(), self.endpoint.url)
                async for chunk in response.content.iter_any():
                    for data in parser.feed(chunk):
                        yield sse_payload(data, self.endpoint.url)
                for data in parser.close():
                    yield sse_payload(data, self.endpoint.url)
        except ClientError:
            raise
        except Exception as exc:
            raise map_error(exc, self.endpoint.url) from exc

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
