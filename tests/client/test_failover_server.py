"""Several replicas behind one client, against real tritonserver processes."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from ds_triton_client import AsyncClient, Client, DeadlineExceededError, InvalidInputError, ModelNotReadyError
from ds_triton_client.concurrency import gather_bounded
from tests.client.conftest import EMBED_MODEL, Replica, dead_url

pytestmark = [pytest.mark.server, pytest.mark.slow]

TEXTS = [f"request {i}: the quick brown fox jumps over the lazy dog" for i in range(200)]


def endpoint_stats(client: Client | AsyncClient) -> dict[str, dict[str, object]]:
    return {str(s["endpoint"]): s for s in client.balancer.snapshot()}


def test_killing_one_of_two_replicas_during_200_requests_fails_none_and_it_is_taken_back(
    replica_a: Replica, replica_b: Replica
) -> None:
    with Client([replica_a.http_url, replica_b.http_url], health_interval=0.5, fail_timeout=30.0) as client:
        reference = client.embed(TEXTS[:1])
        done = 0
        lock = threading.Lock()
        killed = threading.Event()

        def one(i: int) -> np.ndarray:
            nonlocal done
            vector = client.embed([TEXTS[i]])
            with lock:
                done += 1
                if done == 50:
                    replica_b.kill()  # mid-run: other requests are in flight on it
                    killed.set()
            return vector

        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(one, range(200)))  # raises if any request failed
        assert killed.is_set() and len(results) == 200
        np.testing.assert_allclose(results[0], reference, atol=1e-6)
        state = endpoint_stats(client)
        assert state[replica_b.http_url]["available"] is False
        served_by_b_while_down = state[replica_b.http_url]["requests"]

        # Same ports, a fresh process: the active health check takes it back.
        replica_b.start()
        for _ in range(60):
            if endpoint_stats(client)[replica_b.http_url]["available"]:
                break
            time.sleep(0.5)
        assert endpoint_stats(client)[replica_b.http_url]["available"] is True
        for i in range(20):
            client.embed([TEXTS[i]])
        after = endpoint_stats(client)[replica_b.http_url]
        assert int(str(after["requests"])) > int(str(served_by_b_while_down))
        served_by_b = client.stats(EMBED_MODEL)[replica_b.http_url]["model_stats"][0]["inference_count"]
        assert served_by_b > 0


async def test_async_grpc_client_survives_a_replica_killed_during_200_requests(
    replica_a: Replica, replica_b: Replica
) -> None:
    async with AsyncClient(
        [replica_a.grpc_url, replica_b.grpc_url], health_interval=0.5, max_concurrency=4
    ) as client:
        completed = 0

        async def one(i: int) -> np.ndarray:
            nonlocal completed
            vector = await client.embed([TEXTS[i]])
            completed += 1
            if completed == 50:
                replica_b.kill()  # blocks the loop briefly, like a real stall; in-flight calls break
            return vector

        results = await gather_bounded(one, list(range(200)), limit=4)  # raises if any request failed
    assert len(results) == 200 and all(r.shape == (1, 384) for r in results)
    assert endpoint_stats(client)[replica_b.grpc_url]["available"] is False


@pytest.mark.parametrize("scheme", ["http", "grpc"])
def test_refused_endpoint_is_retried_elsewhere_then_ejected(replica_a: Replica, scheme: str) -> None:
    live = replica_a.http_url if scheme == "http" else replica_a.grpc_url
    dead = dead_url(scheme)
    with Client([dead, live], health_interval=0, max_fails=2, fail_timeout=60.0) as client:
        for i in range(20):
            assert client.embed([TEXTS[i]]).shape == (1, 384)
        state = endpoint_stats(client)
        assert state[dead]["available"] is False
        assert int(str(state[dead]["requests"])) <= 3  # tried, ejected, then left alone
        assert "refused" in str(state[dead]["last_error"]).lower() or "connect" in str(
            state[dead]["last_error"]
        )


def test_deadline_covers_every_retry_when_nothing_answers() -> None:
    with Client([dead_url(), dead_url()], health_interval=0, max_attempts=1000, timeout=1.0) as client:
        started = time.monotonic()
        with pytest.raises(DeadlineExceededError, match="deadline of 1s") as raised:
            client.models()
        assert time.monotonic() - started < 10  # bounded by the deadline, not by max_attempts
        assert "last error" in str(raised.value)


@pytest.mark.parametrize("scheme", ["http", "grpc"])
def test_deadline_shorter_than_the_work_raises_timeout(replica_a: Replica, scheme: str) -> None:
    url = replica_a.http_url if scheme == "http" else replica_a.grpc_url
    with Client(url, health_interval=0) as client:
        client.model_info(EMBED_MODEL)
        with pytest.raises(TimeoutError):  # DeadlineExceededError is a TimeoutError
            client.embed(TEXTS * 3, timeout=0.01)
        assert client.embed(TEXTS[:2]).shape == (2, 384)  # the client is fine afterwards


@pytest.mark.parametrize("scheme", ["http", "grpc"])
def test_invalid_input_is_not_retried_and_carries_the_server_message(replica_a: Replica, scheme: str) -> None:
    url = replica_a.http_url if scheme == "http" else replica_a.grpc_url
    with Client(url, health_interval=0) as client:
        client.model_info(EMBED_MODEL)
        before = int(str(endpoint_stats(client)[url]["requests"]))
        with pytest.raises(InvalidInputError, match="row 1 is empty") as raised:
            client.embed(["fine", "   "])
        assert raised.value.endpoint == url
        state = endpoint_stats(client)[url]
        assert int(str(state["requests"])) == before + 1 and state["available"] is True


def test_unknown_model_is_typed_and_does_not_eject(replica_a: Replica) -> None:
    with Client(replica_a.http_url, health_interval=0, max_fails=1) as client:
        with pytest.raises(ModelNotReadyError, match="nope"):
            client.embed(["x"], model="nope")
        assert endpoint_stats(client)[replica_a.http_url]["available"] is True
        assert client.ready(EMBED_MODEL) and not client.ready("nope")
