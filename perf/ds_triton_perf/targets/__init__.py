"""Request functions the load generator drives, one module per transport.

Every system in a comparison (this project's Triton model, PyTriton, the
naive REST server) is reached through an :class:`Endpoint`; ``open_target``
turns it into a :data:`~ds_triton_perf.outcome.RequestFn` with its own
connection, so the load generator never knows which transport it drives.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Literal

from ds_triton_perf.outcome import RequestFn


@dataclass(frozen=True)
class Endpoint:
    """Where a system under test listens.

    Attributes:
        system: Label in reports (``triton``, ``pytriton``, ``rest``).
        kind: ``triton`` (KServe v2 protocol, via the client package) or ``rest`` (JSON POST).
        url: ``host:port`` (HTTP or gRPC port to match ``protocol``), or the REST base URL.
        model: Model name on a Triton-protocol server.
        protocol: ``grpc`` or ``http`` for Triton-protocol servers.
    """

    system: str
    kind: Literal["triton", "rest"]
    url: str
    model: str = ""
    protocol: Literal["http", "grpc"] = "grpc"


def batches(texts: Sequence[str], batch_size: int) -> itertools.cycle[list[str]]:
    """Endless round-robin of ``batch_size``-text requests over ``texts``."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    groups = [[texts[(i + j) % len(texts)] for j in range(batch_size)]
              for i in range(0, len(texts), batch_size)]
    return itertools.cycle(groups)


@asynccontextmanager
async def open_embedding_target(endpoint: Endpoint, texts: Sequence[str],
                                batch_size: int = 1) -> AsyncIterator[RequestFn]:
    """A request function embedding ``batch_size`` texts per request at ``endpoint``."""
    if endpoint.kind == "rest":
        from ds_triton_perf.targets.rest import rest_embedding

        async with rest_embedding(endpoint, batches(texts, batch_size)) as request:
            yield request
    else:
        from ds_triton_perf.targets.triton import triton_embedding

        async with triton_embedding(endpoint, batches(texts, batch_size)) as request:
            yield request
