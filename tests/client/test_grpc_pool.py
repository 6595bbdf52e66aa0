"""The gRPC channel pool: channels open only as load needs them, never beyond ``pool_size``."""

from __future__ import annotations

import contextlib
import types
from typing import Any

from ds_triton_client.endpoints import parse_endpoint
from ds_triton_client.options import ClientOptions
from ds_triton_client.transport.grpc_common import CALLS_PER_CHANNEL, ChannelPool


class FakeChannel:
    def unary_unary(self, *args: Any, **kwargs: Any) -> Any:
        return None

    unary_stream = stream_unary = stream_stream = unary_unary


def fake_flavour(opened: list[str]) -> types.ModuleType:
    module = types.ModuleType("fake_grpc")

    def insecure_channel(address: str, options: Any) -> FakeChannel:
        opened.append(address)
        return FakeChannel()

    module.insecure_channel = insecure_channel  # type: ignore[attr-defined]
    return module


def test_a_new_channel_opens_only_when_every_open_one_is_full() -> None:
    opened: list[str] = []
    pool = ChannelPool(parse_endpoint("grpc://h:1"), ClientOptions(pool_size=2), fake_flavour(opened))
    with contextlib.ExitStack() as stack:
        for _ in range(CALLS_PER_CHANNEL):
            stack.enter_context(pool.lease())
        assert pool.size == 1
        stack.enter_context(pool.lease())  # the first channel is full
        assert pool.size == 2
        for _ in range(3 * CALLS_PER_CHANNEL):  # both full: share them, never a third
            stack.enter_context(pool.lease())
        assert pool.size == 2
    with pool.lease(), pool.lease():  # leases ended: the kept channels serve again
        assert pool.size == 2
    assert opened == ["h:1", "h:1"]
    assert len(pool.take_all()) == 2 and pool.size == 0
