"""Streaming generation over Triton's ``generate_stream`` (server-sent events).

Each event carries one chunk of ``text_output``; its arrival time is recorded
so the load generator can report time to first token and inter-token latency.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import aiohttp

from ds_triton_perf.outcome import Outcome, RequestFn


@asynccontextmanager
async def open_generation_target(http_url: str, model: str,
                                 requests: Sequence[tuple[str, int]]) -> AsyncIterator[RequestFn]:
    """A request function streaming one ``(prompt, max_tokens)`` per call, round-robin.

    Decoding is greedy with EOS ignored, so every request yields exactly ``max_tokens``.
    """
    url = f"http://{http_url}/v2/models/{model}/generate_stream"
    bodies = itertools.cycle([
        {"text_input": prompt, "stream": True, "exclude_input_in_output": True,
         "sampling_parameters": json.dumps({"temperature": 0, "max_tokens": tokens, "ignore_eos": True})}
        for prompt, tokens in requests
    ])
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def request() -> Outcome:
            times: list[float] = []
            async with session.post(url, json=next(bodies)) as response:
                if response.status != 200:
                    return Outcome(items=0, error=f"HTTP{response.status}")
                async for raw in response.content:
                    line = raw.strip()
                    if not line.startswith(b"data:"):
                        continue
                    event = json.loads(line[5:])
                    if "error" in event:
                        return Outcome(items=0, error="StreamError")
                    if event.get("text_output"):
                        times.append(time.perf_counter())
            return Outcome(items=len(times), token_times=times)

        yield request
