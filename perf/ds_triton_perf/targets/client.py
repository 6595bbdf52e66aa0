"""One ``ds_triton_client.AsyncClient`` per load run, set up for measuring.

The load generator owns concurrency, retries would hide errors, and health
checks would add requests of their own, so the client gets a large
concurrency cap, one attempt per call and no background probing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Literal

from ds_triton_client.aclient import AsyncClient

LOAD_CONCURRENCY_CAP = 4096


@asynccontextmanager
async def measuring_client(url: str, protocol: Literal["http", "grpc"],
                           timeout_s: float = 120.0) -> AsyncIterator[AsyncClient]:
    """An ``AsyncClient`` for ``host:port`` that neither retries nor probes."""
    client = AsyncClient(f"{protocol}://{url}", max_concurrency=LOAD_CONCURRENCY_CAP, pool_size=256,
                         max_attempts=1, health_interval=0, timeout=timeout_s)
    try:
        yield client
    finally:
        await client.aclose()
