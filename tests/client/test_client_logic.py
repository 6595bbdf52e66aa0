"""Client call logic over fake transports: chunking, order, failover, and streams never retried."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import AsyncGenerator, Generator, Mapping, Sequence
from typing import Any

import numpy as np
import pytest

from ds_triton_client import (
    AsyncClient,
    Client,
    ClientClosedError,
    ModelNotReadyError,
    ServerConnectionError,
    ServerError,
    StreamInterruptedError,
)
from ds_triton_client.endpoints import Endpoint, parse_endpoint
from ds_triton_client.inflight import Abort, InFlightRegistry
from ds_triton_client.model_info import ModelInfo
from ds_triton_client.transport.base import GenerationCall, Op

URLS = ["http://127.0.0.1:1", "http://127.0.0.1:2"]
EMBED_INFO = ModelInfo("text_embedding", 4, {"embedding": (2,)}, False)
GEN_INFO = ModelInfo("text_generation", 0, {"text_output": (-1,)}, True)


class FakeTransport:
    """Scripted endpoint: embeds a text as [len, first code point]; streams ``pieces``."""

    def __init__(
        self,
        pieces: Sequence[str] = ("a", "b", "c"),
        fail_at: int | None = None,
        endpoint: Endpoint | None = None,
        hang_at: int | None = None,
    ) -> None:
        self.pieces = list(pieces)
        self.fail_at = fail_at  # raise a connection error before piece number fail_at
        self.hang_at = hang_at  # go silent before piece number hang_at, until aborted
        self.hanging = threading.Event()
        self.endpoint = endpoint or parse_endpoint(URLS[0])
        self.rows_per_call: list[int] = []
        self.streams = 0
        self.lock = threading.Lock()

    def call(self, op: Op[Any], timeout: float) -> Any:
        assert op.kind == "infer", op
        texts = [bytes(b).decode() for b in op.inputs[0].data.reshape(-1)]
        with self.lock:
            self.rows_per_call.append(len(texts))
        return {"embedding": np.array([[len(t), ord(t[0])] for t in texts], dtype=np.float32)}

    def _pieces(self, aborted: threading.Event) -> Generator[Mapping[str, Any], None, None]:
        self.streams += 1
        for i, piece in enumerate(self.pieces):
            if self.fail_at == i:
                raise ServerConnectionError("connection reset by peer")
            if self.hang_at == i:  # like a stream of a dead generation stub: nothing, until cancelled
                self.hanging.set()
                assert aborted.wait(10), "never aborted"
                raise ServerError("Locally cancelled by application!")
            yield {"text_output": piece, "num_output_tokens": 1}

    def generate(self, call: GenerationCall, timeout: float, abort: Abort | None = None) -> Any:
        aborted = threading.Event()
        if abort is not None:
            abort.bind(aborted.set)
        return self._pieces(aborted)

    def close(self) -> None:
        pass


class AsyncFakeTransport:
    """The asyncio face of a ``FakeTransport``."""

    def __init__(
        self, pieces: Sequence[str] = ("a", "b", "c"), fail_at: int | None = None, hang_at: int | None = None
    ) -> None:
        self.sync = FakeTransport(pieces, fail_at)
        self.hang_at = hang_at  # as FakeTransport's, but ended the way grpc.aio ends a cancelled call

    @property
    def endpoint(self) -> Endpoint:
        return self.sync.endpoint

    @property
    def streams(self) -> int:
        return self.sync.streams

    @property
    def rows_per_call(self) -> list[int]:
        return self.sync.rows_per_call

    async def call(self, op: Op[Any], timeout: float) -> Any:
        return self.sync.call(op, timeout)

    async def _pieces(self, aborted: asyncio.Event) -> AsyncGenerator[Mapping[str, Any], None]:
        for i, item in enumerate(self.sync._pieces(threading.Event())):
            if self.hang_at == i:
                self.sync.hanging.set()
                await asyncio.wait_for(aborted.wait(), 10)
                raise asyncio.CancelledError
            yield item

    def generate(self, call: GenerationCall, timeout: float, abort: Abort | None = None) -> Any:
        aborted = asyncio.Event()
        if abort is not None:
            abort.bind(aborted.set)
        return self._pieces(aborted)

    async def close(self) -> None:
        pass


def pin_first_pick(client: Client | AsyncClient) -> None:
    """Make the balancer start from the first endpoint on ties (it rotates by default)."""
    vars(client.balancer)["_rotation"] = itertools.repeat(0)


def sync_client(*transports: FakeTransport, **options: Any) -> Client:
    client = Client(URLS[: len(transports)], health_interval=0, backoff_base=0.0, **options)
    for endpoint, transport in zip(client.endpoints, transports, strict=True):
        transport.endpoint = endpoint
    vars(client)["_transports"] = dict(zip(client.endpoints, transports, strict=True))
    client._model_info = {"text_embedding": EMBED_INFO, "text_generation": GEN_INFO}
    return client


def async_client(*transports: AsyncFakeTransport, **options: Any) -> AsyncClient:
    client = AsyncClient(URLS[: len(transports)], health_interval=0, backoff_base=0.0, **options)
    for endpoint, transport in zip(client.endpoints, transports, strict=True):
        transport.sync.endpoint = endpoint
    vars(client)["_transports"] = dict(zip(client.endpoints, transports, strict=True))
    client._model_info = {"text_embedding": EMBED_INFO, "text_generation": GEN_INFO}
    return client


TEXTS = [f"{chr(65 + i % 26)}{'x' * i}" for i in range(23)]
EXPECTED = np.array([[len(t), ord(t[0])] for t in TEXTS], dtype=np.float32)


def test_embed_chunks_to_max_batch_size_and_keeps_order() -> None:
    transport = FakeTransport()
    with sync_client(transport, max_concurrency=3) as client:
        np.testing.assert_array_equal(client.embed(TEXTS), EXPECTED)
        assert client.embed([]).shape == (0, 2)
    assert sorted(transport.rows_per_call) == [3, 4, 4, 4, 4, 4]


async def test_async_embed_matches_sync_on_the_same_transport() -> None:
    transport = AsyncFakeTransport()
    with sync_client(transport.sync, max_concurrency=3) as client:
        sync_vectors = client.embed(TEXTS)
    sync_calls = sorted(transport.rows_per_call)
    transport.rows_per_call.clear()
    async with async_client(transport, max_concurrency=2) as aclient:
        async_vectors = await aclient.embed(TEXTS)
    np.testing.assert_array_equal(async_vectors, sync_vectors)
    np.testing.assert_array_equal(sync_vectors, EXPECTED)
    assert sorted(transport.rows_per_call) == sync_calls == [3, 4, 4, 4, 4, 4]


def test_stream_fails_over_when_the_first_endpoint_breaks_before_any_piece() -> None:
    broken, healthy = FakeTransport(fail_at=0), FakeTransport()
    with sync_client(broken, healthy) as client:
        pin_first_pick(client)
        assert list(client.stream("hi")) == ["a", "b", "c"]
    assert (broken.streams, healthy.streams) == (1, 1)


def test_stream_is_never_retried_after_it_started() -> None:
    broken, healthy = FakeTransport(fail_at=2), FakeTransport()
    with sync_client(broken, healthy) as client:
        pin_first_pick(client)
        received: list[str] = []
        with pytest.raises(StreamInterruptedError, match="connection reset"):
            for piece in client.stream("hi"):
                received.append(piece)
    assert received == ["a", "b"] and healthy.streams == 0


def test_generate_joins_pieces_and_counts_tokens() -> None:
    with sync_client(FakeTransport(pieces=["He", "llo"])) as client:
        result = client.generate("hi", max_tokens=2)
    assert (result.text, result.num_output_tokens) == ("Hello", 2)


async def test_async_stream_order_failover_and_no_retry_after_start() -> None:
    broken, healthy = AsyncFakeTransport(fail_at=0), AsyncFakeTransport()
    async with async_client(broken, healthy) as client:
        pin_first_pick(client)
        assert [p async for p in client.stream("hi")] == ["a", "b", "c"]
    late, spare = AsyncFakeTransport(fail_at=1), AsyncFakeTransport()
    async with async_client(late, spare) as client:
        pin_first_pick(client)
        with pytest.raises(StreamInterruptedError):
            _ = [p async for p in client.stream("hi")]
    assert spare.streams == 0


def test_consumer_stopping_a_stream_early_does_not_count_as_a_failure() -> None:
    transport = FakeTransport(pieces=["a", "b", "c", "d"])
    with sync_client(transport) as client:
        stream = client.stream("hi")
        assert next(stream) == "a"
        stream.close()
        state = client.balancer.snapshot()[0]
        assert state["outstanding"] == 0 and state["failures"] == 0


async def test_sync_and_async_attribute_a_generation_to_the_endpoint_that_served_it() -> None:
    broken, healthy = FakeTransport(fail_at=0), FakeTransport()
    with sync_client(broken, healthy) as client:
        pin_first_pick(client)
        sync_result = client.generate("hi")
    abroken, ahealthy = AsyncFakeTransport(fail_at=0), AsyncFakeTransport()
    async with async_client(abroken, ahealthy) as aclient:
        pin_first_pick(aclient)
        async_result = await aclient.generate("hi")
    assert sync_result.endpoint == async_result.endpoint == URLS[1]
    assert sync_result.text == async_result.text == "abc"


async def test_a_closed_client_refuses_calls() -> None:
    client = sync_client(FakeTransport())
    client.close()
    client.close()  # idempotent
    with pytest.raises(ClientClosedError):
        client.embed(["x"])
    with pytest.raises(ClientClosedError):
        next(client.stream("hi"))
    with pytest.raises(ClientClosedError), client:
        pass
    aclient = async_client(AsyncFakeTransport())
    await aclient.aclose()
    await aclient.aclose()
    with pytest.raises(ClientClosedError):
        await aclient.generate("hi")
    with pytest.raises(ClientClosedError):
        await aclient.health()


def vanish_when_silent(
    client: Client | AsyncClient, transport: FakeTransport, model: str
) -> threading.Thread:
    """What the health check does when a stub died: once ``transport`` goes silent, say the
    model is gone from its endpoint (the registry's silence is shortened for the test)."""
    vars(client)["_inflight"] = registry = InFlightRegistry(silence=0.05)

    def vanish() -> None:
        assert transport.hanging.wait(10)
        time.sleep(0.1)
        assert registry.model_gone(transport.endpoint, model, "health check") == 1

    thread = threading.Thread(target=vanish, daemon=True)
    thread.start()
    return thread


def test_a_call_silent_on_a_vanished_model_is_ended_and_fails_over() -> None:
    stranded, healthy = FakeTransport(hang_at=0), FakeTransport()
    with sync_client(stranded, healthy) as client:
        pin_first_pick(client)
        thread = vanish_when_silent(client, stranded, "text_generation")
        assert list(client.stream("hi")) == ["a", "b", "c"]
        thread.join()
    assert (stranded.streams, healthy.streams) == (1, 1)


def test_a_started_stream_on_a_vanished_model_says_so() -> None:
    stranded, spare = FakeTransport(hang_at=1), FakeTransport()
    with sync_client(stranded, spare) as client:
        pin_first_pick(client)
        vanish_when_silent(client, stranded, "text_generation")
        with pytest.raises(StreamInterruptedError, match=r"no longer ready on http://127\.0\.0\.1:1"):
            _ = list(client.stream("hi"))
    assert spare.streams == 0


async def test_async_calls_on_a_vanished_model_end_like_sync_ones() -> None:
    stranded, healthy = AsyncFakeTransport(hang_at=1), AsyncFakeTransport()
    async with async_client(stranded, healthy) as client:
        pin_first_pick(client)
        vanish_when_silent(client, stranded.sync, "text_generation")
        with pytest.raises(StreamInterruptedError, match="no longer ready"):
            _ = [p async for p in client.stream("hi")]
    # Not started: the cancellation the transport raises becomes a failover, not the caller's.
    stranded, healthy = AsyncFakeTransport(hang_at=0), AsyncFakeTransport()
    async with async_client(stranded, healthy) as client:
        pin_first_pick(client)
        vanish_when_silent(client, stranded.sync, "text_generation")
        result = await client.generate("hi")
    assert (result.text, result.endpoint) == ("abc", URLS[1])


def test_only_silent_calls_of_the_vanished_model_are_ended() -> None:
    now = [100.0]
    registry = InFlightRegistry(silence=2.0, clock=lambda: now[0])
    endpoint, other = parse_endpoint(URLS[0]), parse_endpoint(URLS[1])
    with (
        registry.track(endpoint, "gen") as talking,
        registry.track(endpoint, "gen") as silent,
        registry.track(endpoint, "emb") as other_model,
        registry.track(other, "gen") as other_endpoint,
    ):
        now[0] = 103.0
        talking.heard()
        assert registry.model_gone(endpoint, "gen", "health check") == 1
        assert silent.abort.reason and "'gen' is no longer ready on http://127.0.0.1:1" in silent.abort.reason
        assert talking.abort.reason is other_model.abort.reason is other_endpoint.abort.reason is None
    assert registry.model_gone(endpoint, "gen", "again") == 0  # finished calls are forgotten


def test_abort_cancels_what_is_bound_before_or_after_it_fires() -> None:
    abort, cancelled = Abort(), []
    abort.bind(lambda: cancelled.append("early"))
    abort.fire("gone")
    abort.fire("twice")
    abort.bind(lambda: cancelled.append("late"))
    assert cancelled == ["early", "late"] and abort.reason == "gone"


def test_a_failed_stub_message_is_retried_elsewhere_as_not_ready() -> None:
    from ds_triton_client.errors import error_from_status

    error = error_from_status(500, "Stub process 'text_embedding_0_0' is not healthy.")
    assert isinstance(error, ModelNotReadyError) and error.retryable


class ScriptedHealth:
    """Answers readiness: the server's, then each model's (``None``: the probe fails)."""

    def __init__(self, server: bool, models: dict[str, bool | None]) -> None:
        self.server, self.models = server, models
        self.asked: list[str] = []

    def call(self, op: Op[Any], timeout: float) -> bool:
        self.asked.append(op.model)
        answer = self.server if op.kind == "server_ready" else self.models[op.model]
        if answer is None:
            raise ServerConnectionError("timed out")
        return answer


def test_a_probe_names_only_the_models_the_server_said_are_not_ready() -> None:
    from ds_triton_client.health import Probe, probe_sync

    server = ScriptedHealth(True, {"a": False, "b": None, "c": True})
    assert probe_sync(server, frozenset("abc"), 1.0) == Probe("model 'a' not ready", ("a",))
    assert server.asked == ["", "a", "b", "c"]  # every model, so each vanished one is known
    down = ScriptedHealth(False, {"a": False})
    assert probe_sync(down, frozenset("a"), 1.0) == Probe("server not ready", ())
    assert down.asked == [""]
    assert probe_sync(ScriptedHealth(True, {"a": True}), frozenset("a"), 1.0) == Probe()
