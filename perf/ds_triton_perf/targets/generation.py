"""Streaming generation through the client package's ``AsyncClient.stream``.

The arrival time of every streamed piece is recorded so the load generator
can report time to first token and inter-token latency.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, Literal

from ds_triton_perf.outcome import Outcome, RequestFn
from ds_triton_perf.targets.client import measuring_client


@asynccontextmanager
async def open_generation_target(url: str, model: str, requests: Sequence[tuple[str, int]],
                                 protocol: Literal["http", "grpc"] = "http",
                                 sampling: Mapping[str, Any] | None = None) -> AsyncIterator[RequestFn]:
    """A request function streaming one ``(prompt, max_tokens)`` per call, round-robin.

    Decoding is greedy with EOS ignored, so every request yields exactly ``max_tokens``;
    ``sampling`` adds keys to every request (e.g. ``{"logprobs": 5}`` to measure their cost).
    """
    extra = dict(sampling or {})
    cycle = itertools.cycle(requests)
    async with measuring_client(url, protocol) as client:
        await client.model_info(model)

        async def request() -> Outcome:
            prompt, max_tokens = next(cycle)
            times: list[float] = []
            async for _piece in client.stream(prompt, model=model, temperature=0, max_tokens=max_tokens,
                                              ignore_eos=True, **extra):
                times.append(time.perf_counter())
            return Outcome(items=len(times), token_times=times)

        yield request
