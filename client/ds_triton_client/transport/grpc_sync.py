"""Blocking gRPC(S) transport: the shared gRPC codec over the endpoint's channel pool."""

from __future__ import annotations

import threading
from collections.abc import Generator, Iterator, Mapping
from typing import Any, TypeVar, cast

import grpc

from ds_triton_client.endpoints import Endpoint
from ds_triton_client.inflight import Abort
from ds_triton_client.options import ClientOptions
from ds_triton_client.transport.base import GenerationCall, Op
from ds_triton_client.transport.grpc_common import GrpcTransportBase, decode, generation_request

T = TypeVar("T")


class GrpcSyncTransport(GrpcTransportBase):
    """One endpoint; every call and generation stream multiplexes over the pooled channels."""

    def __init__(self, endpoint: Endpoint, options: ClientOptions) -> None:
        super().__init__(endpoint, options, grpc)

    def call(self, op: Op[T], timeout: float) -> T:
        with self._unary(op, timeout) as response:
            return cast(T, decode(op, response))

    def generate(
        self, call: GenerationCall, timeout: float, abort: Abort | None = None
    ) -> Generator[Mapping[str, Any], None, None]:
        """Send one request on a new stream; yield its responses until the final one."""
        finished = threading.Event()

        def requests() -> Iterator[Any]:
            yield generation_request(call)
            # The request side stays open until the final response: half-closing
            # early lets some servers end the stream before the last response.
            finished.wait()

        with self._stream(requests(), finished, timeout, abort) as responses:
            for response in responses:
                if outputs := self._answer(response, finished):
                    yield outputs

    def close(self) -> None:
        for channel in self._pool.take_all():
            channel.close()
