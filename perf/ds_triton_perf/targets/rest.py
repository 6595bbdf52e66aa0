"""The naive REST peer's JSON API: ``POST /embed {"texts": [...]}``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import aiohttp

from ds_triton_perf.outcome import Outcome, RequestFn

if TYPE_CHECKING:
    from ds_triton_perf.targets import Endpoint


@asynccontextmanager
async def rest_embedding(endpoint: Endpoint, requests: Iterator[list[str]]) -> AsyncIterator[RequestFn]:
    url = endpoint.url.rstrip("/") + "/embed"
    if not url.startswith("http"):
        url = "http://" + url
    # No connection cap: the load generator, not the HTTP pool, decides the concurrency.
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def request() -> Outcome:
            texts = next(requests)
            async with session.post(url, json={"texts": texts}) as response:
                if response.status != 200:
                    return Outcome(items=0, error=f"HTTP{response.status}")
                body = await response.json()
            if len(body.get("embeddings", [])) != len(texts):
                return Outcome(items=0, error="BadResponse")
            return Outcome(items=len(texts))

        yield request
