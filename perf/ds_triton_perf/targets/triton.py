"""Triton-protocol (KServe v2) embedding requests: this project's model and PyTriton's."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import numpy as np

from ds_triton_perf.outcome import Outcome, RequestFn

if TYPE_CHECKING:
    from ds_triton_perf.targets import Endpoint

INPUT = "text"
OUTPUT = "embedding"


@asynccontextmanager
async def triton_embedding(endpoint: Endpoint, requests: Iterator[list[str]]) -> AsyncIterator[RequestFn]:
    if endpoint.protocol == "grpc":
        import tritonclient.grpc.aio as client_module
    else:
        import tritonclient.http.aio as client_module
    client: Any = client_module.InferenceServerClient(endpoint.url)
    try:
        output = client_module.InferRequestedOutput(OUTPUT)

        async def request() -> Outcome:
            texts = next(requests)
            tensor = client_module.InferInput(INPUT, [len(texts), 1], "BYTES")
            tensor.set_data_from_numpy(np.array([[t.encode()] for t in texts], dtype=np.object_))
            result = await client.infer(endpoint.model, [tensor], outputs=[output])
            embeddings = result.as_numpy(OUTPUT)
            if embeddings is None or embeddings.shape[0] != len(texts):
                return Outcome(items=0, error="BadResponse")
            return Outcome(items=len(texts))

        yield request
    finally:
        await client.close()
