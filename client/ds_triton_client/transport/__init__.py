"""Transports: one per protocol and flavour, all speaking Triton's KServe v2 API.

``make_sync_transport``/``make_async_transport`` choose by the endpoint's scheme.
The clients above them never see protocol details.
"""

from __future__ import annotations

from ds_triton_client.endpoints import Endpoint
from ds_triton_client.options import ClientOptions
from ds_triton_client.transport.base import AsyncTransport, SyncTransport


def make_sync_transport(endpoint: Endpoint, options: ClientOptions) -> SyncTransport:
    """A blocking transport for ``endpoint`` (HTTP: urllib3 pool; gRPC: tritonclient.grpc)."""
    if endpoint.protocol == "grpc":
        from ds_triton_client.transport.grpc_sync import GrpcSyncTransport

        return GrpcSyncTransport(endpoint, options)
    from ds_triton_client.transport.http_sync import HttpSyncTransport

    return HttpSyncTransport(endpoint, options)


def make_async_transport(endpoint: Endpoint, options: ClientOptions) -> AsyncTransport:
    """An asyncio transport for ``endpoint`` (HTTP: aiohttp; gRPC: tritonclient.grpc.aio)."""
    if endpoint.protocol == "grpc":
        from ds_triton_client.transport.grpc_async import GrpcAsyncTransport

        return GrpcAsyncTransport(endpoint, options)
    from ds_triton_client.transport.http_async import HttpAsyncTransport

    return HttpAsyncTransport(endpoint, options)


__all__ = ["AsyncTransport", "SyncTransport", "make_async_transport", "make_sync_transport"]
