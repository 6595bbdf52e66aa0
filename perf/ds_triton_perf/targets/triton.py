"""Triton-protocol (KServe v2) embedding requests through the project's client package.

Used for this project's model and for PyTriton's, which speak the same protocol.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from ds_triton_perf.outcome import Outcome, RequestFn
from ds_triton_perf.targets.client import measuring_client

if TYPE_CHECKING:
    from ds_triton_perf.targets import Endpoint


@asynccontextmanager
async def triton_embedding(endpoint: Endpoint, requests: Iterator[list[str]]) -> AsyncIterator[RequestFn]:
    async with measuring_client(endpoint.url, endpoint.protocol) as client:
        # Read the model's config once here, so the first timed request does not pay for it.
        await client.model_info(endpoint.model)

        async def request() -> Outcome:
            texts = next(requests)
            embeddings = await client.embed(texts, model=endpoint.model)
            if embeddings.shape[0] != len(texts):
                return Outcome(items=0, error="BadResponse")
            return Outcome(items=len(texts))

        yield request
