"""asyncio gRPC(S) transport: the shared gRPC codec over the endpoint's aio channel pool.

Channels open on first use, inside the running event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Any, TypeVar, cast

from grpc import aio

from ds_triton_client.endpoints import Endpoint
from ds_triton_client.inflight import Abort
from ds_triton_client.options import ClientOptions
from ds_triton_client.transport.base import GenerationCall, Op
from ds_triton_client.transport.grpc_common import GrpcTransportBase, decode, generation_request

T = TypeVar("T")


class GrpcAsyncTransport(GrpcTransportBase):
    """The asyncio twin of ``GrpcSyncTransport``."""

    def __init__(self, endpoint: Endpoint, options: ClientOptions) -> None:
        super().__init__(endpoint, options, aio)

    async def call(self, op: Op[T], timeout: float) -> T:
        with self._unary(op, timeout) as pending:
            answer = await pending
        return cast(T, decode(op, answer))

    async def generate(
        self, call: GenerationCall, timeout: float, abort: Abort | None = None
    ) -> AsyncGenerator[Mapping[str, Any], None]:
        """Send one request on a new stream; yield its responses until the final one."""
        finished = asyncio.Event()

        async def requests() -> AsyncIterator[Any]:
            yield generation_request(call)
            await finished.wait()  # half-closing early may end the stream too soon (see grpc_sync)

        with self._stream(requests(), finished, timeout, abort) as responses:
            async for response in responses:
                if outputs := self._answer(response, finished):
                    yield outputs

    async def close(self) -> None:
        for channel in self._pool.take_all():
            await channel.close()
