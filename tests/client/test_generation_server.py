"""Generation and streaming against the shipped ``text_generation`` model (skipped until it exists)."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from ds_triton_client import AsyncClient, Client, InvalidInputError
from tests.client.conftest import Replica

pytestmark = [pytest.mark.server, pytest.mark.slow]

PROMPT = "The capital of France is"
GREEDY: dict[str, Any] = {"max_tokens": 8, "temperature": 0.0, "ignore_eos": True}


def url_for(replica: Replica, scheme: str) -> str:
    return replica.http_url if scheme == "http" else replica.grpc_url


@pytest.mark.parametrize("scheme", ["http", "grpc"])
def test_stream_pieces_arrive_in_order_and_join_to_the_generated_text(
    generation_server: Replica, scheme: str
) -> None:
    with Client(url_for(generation_server, scheme), health_interval=0) as client:
        result = client.generate(PROMPT, **GREEDY)
        pieces = list(client.stream(PROMPT, **GREEDY))
    assert result.num_output_tokens == 8 and result.num_input_tokens and result.num_input_tokens > 0
    assert len(pieces) > 1  # really streamed, not one final blob
    assert "".join(pieces) == result.text  # same tokens, same order


@pytest.mark.parametrize("scheme", ["http", "grpc"])
async def test_async_stream_and_generate_match_sync(generation_server: Replica, scheme: str) -> None:
    url = url_for(generation_server, scheme)
    with Client(url, health_interval=0) as client:
        expected = client.generate(PROMPT, **GREEDY).text
    async with AsyncClient(url, health_interval=0) as aclient:
        pieces = [p async for p in aclient.stream(PROMPT, **GREEDY)]
        result = await aclient.generate(PROMPT, **GREEDY)
    assert "".join(pieces) == expected == result.text


@pytest.mark.parametrize("scheme", ["http", "grpc"])
def test_bad_sampling_is_rejected_with_the_key_named(generation_server: Replica, scheme: str) -> None:
    with Client(url_for(generation_server, scheme), health_interval=0) as client:
        with pytest.raises(InvalidInputError, match="temperature"):
            client.generate(PROMPT, temperature=-1.0)
        with pytest.raises(InvalidInputError, match="max_tokens"):
            list(client.stream(PROMPT, max_tokens=10**9))


def test_grpc_generations_share_the_pooled_channels(
    generation_server: Replica, monkeypatch: pytest.MonkeyPatch
) -> None:
    import grpc
    from grpc import aio

    opened: list[str] = []
    for module in (grpc, aio):
        real = module.insecure_channel

        def spy(target: str, *args: Any, _real: Any = real, **kwargs: Any) -> Any:
            opened.append(target)
            return _real(target, *args, **kwargs)

        monkeypatch.setattr(module, "insecure_channel", spy)
    with Client(generation_server.grpc_url, health_interval=0, pool_size=2) as client:
        texts = [client.generate(PROMPT, **GREEDY).text for _ in range(3)]
        with ThreadPoolExecutor(4) as pool:  # concurrent streams multiplex over the same channels
            streamed = list(pool.map(lambda _: "".join(client.stream(PROMPT, **GREEDY)), range(4)))
    assert len(set(texts + streamed)) == 1
    assert len(opened) == 1, opened  # one pooled channel carries them all, not one per generation
    opened.clear()

    async def run() -> list[str]:
        async with AsyncClient(generation_server.grpc_url, health_interval=0, pool_size=1) as aclient:
            return [(await aclient.generate(PROMPT, **GREEDY)).text for _ in range(3)]

    assert len(set(asyncio.run(run()) + texts)) == 1
    assert len(opened) == 1, opened
