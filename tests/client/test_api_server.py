"""The typed API over HTTP and gRPC against a real replica: embed, health, models, stats."""

from __future__ import annotations

import numpy as np
import pytest

from ds_triton_client import AsyncClient, Client
from tests.client.conftest import EMBED_MODEL, Replica

pytestmark = [pytest.mark.server, pytest.mark.slow]

TEXTS = [f"sentence {i} about {'cats' if i % 2 else 'ships'}" for i in range(150)]  # 3 chunks of <= 64
# The first and last row of every chunk (max_batch_size 64), embedded alone as the reference.
CHUNK_EDGES = [0, 63, 64, 127, 128, 149]


def url_for(replica: Replica, scheme: str) -> str:
    return replica.http_url if scheme == "http" else replica.grpc_url


@pytest.mark.parametrize("scheme", ["http", "grpc"])
async def test_async_and_sync_give_identical_embeddings(replica_a: Replica, scheme: str) -> None:
    url = url_for(replica_a, scheme)
    with Client(url, health_interval=0) as client:
        assert client.model_info(EMBED_MODEL).max_batch_size == 64
        sync_vectors = client.embed(TEXTS)
        alone = np.concatenate([client.embed([TEXTS[i]]) for i in CHUNK_EDGES])
    async with AsyncClient(url, health_interval=0) as aclient:
        async_vectors = await aclient.embed(TEXTS)
    assert sync_vectors.shape == (150, 384) and sync_vectors.dtype == np.float32
    # Each row is its own text's embedding in every chunk, for both clients.
    np.testing.assert_allclose(sync_vectors[CHUNK_EDGES], alone, atol=1e-5)
    np.testing.assert_allclose(async_vectors[CHUNK_EDGES], alone, atol=1e-5)
    np.testing.assert_allclose(async_vectors, sync_vectors, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(sync_vectors, axis=1), 1.0, atol=1e-4)


def test_http_and_grpc_agree(replica_a: Replica) -> None:
    with Client([replica_a.http_url], health_interval=0) as http, Client(replica_a.grpc_url) as grpc:
        np.testing.assert_allclose(http.embed(TEXTS[:10]), grpc.embed(TEXTS[:10]), atol=1e-6)


@pytest.mark.parametrize("scheme", ["http", "grpc"])
async def test_health_ready_models_and_stats(replica_a: Replica, scheme: str) -> None:
    url = url_for(replica_a, scheme)
    with Client(url, health_interval=0, models=[EMBED_MODEL]) as client:
        (entry,) = client.health()
        assert entry["ready"] is True and entry["endpoint"] == url
        assert client.ready(EMBED_MODEL)
        assert {"name": EMBED_MODEL, "version": "1", "state": "READY"}.items() <= client.models()[0].items()
        client.embed(TEXTS[:3])
        stats = client.stats(EMBED_MODEL)[url]["model_stats"][0]
        assert stats["name"] == EMBED_MODEL and stats["inference_count"] >= 3
    async with AsyncClient(url, health_interval=0) as aclient:
        assert (await aclient.health())[0]["ready"] is True
        assert await aclient.ready(EMBED_MODEL)
        assert [m["name"] for m in await aclient.models()] == [EMBED_MODEL]
        assert (await aclient.stats(EMBED_MODEL))[url]["model_stats"][0]["inference_count"] >= 3


async def test_async_health_task_runs_and_stops(replica_a: Replica) -> None:
    async with AsyncClient(replica_a.http_url, health_interval=0.05) as client:
        await client.embed(["warm"])
        assert client._health._task is not None and not client._health._task.done()
    assert client._health._task is None
