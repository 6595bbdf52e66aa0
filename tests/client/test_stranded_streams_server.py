"""Streams stranded on a dead generation stub end in seconds and run elsewhere (real servers).

Triton 2.51 never sends the final response of a stream whose stub died. ``ds-triton serve``'s
supervisor takes the model out of readiness; the client's health check sees that, ends the
silent calls on that endpoint, and fails them over to the other replica.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ds_triton.server_process.stubs import find_stubs
from ds_triton_client import AsyncClient, Client
from tests.client.conftest import GENERATE_MODEL, ROOT, Replica
from tests.serve_process import ServeProcess, serving

pytestmark = [pytest.mark.server, pytest.mark.slow]

PROMPT = "The quick brown fox"
SAMPLING = {"max_tokens": 8, "temperature": 0}


@pytest.fixture
def supervised(tmp_path: Path) -> Iterator[ServeProcess]:
    repository = tmp_path / "model_repository"
    shutil.copytree(ROOT / "model_repository" / GENERATE_MODEL, repository / GENERATE_MODEL,
                    ignore=shutil.ignore_patterns("__pycache__"), symlinks=True)  # fmt: skip
    with serving(repository, tmp_path) as process:
        yield process


def test_streams_on_a_dead_generation_stub_fail_over_within_seconds(
    supervised: ServeProcess, generation_server: Replica
) -> None:
    options = {"health_interval": 0.5, "stranded_after": 1.0, "timeout": 120}
    sync_urls = [f"grpc://{supervised.grpc_url}", generation_server.grpc_url]
    async_urls = [f"http://{supervised.http_url}", generation_server.http_url]
    frozen, results = threading.Event(), {}

    def sync_stream(client: Client) -> None:
        frozen.wait()
        started = time.monotonic()
        results["gRPC stream"] = ("".join(client.stream(PROMPT, **SAMPLING)), "", time.monotonic() - started)

    async def async_generate() -> None:
        async with AsyncClient(async_urls, **options) as client:
            await asyncio.gather(*(client.generate("warm", max_tokens=1) for _ in range(4)))  # both watched
            vars(client.balancer)["_rotation"] = itertools.repeat(0)  # the supervised server first
            await asyncio.to_thread(frozen.wait)
            started = time.monotonic()
            result = await client.generate(PROMPT, **SAMPLING)
            results["HTTP generate"] = (result.text, result.endpoint, time.monotonic() - started)

    with Client(sync_urls, **options) as client:
        for _ in range(4):  # both replicas serve once, so both are watched
            expected = client.generate(PROMPT, **SAMPLING).text  # greedy: the same on both
        vars(client.balancer)["_rotation"] = itertools.repeat(0)
        threads = [
            threading.Thread(target=sync_stream, args=(client,)),
            threading.Thread(target=asyncio.run, args=(async_generate(),)),
        ]
        for thread in threads:
            thread.start()
        time.sleep(3)  # the async client has warmed up
        (stub,) = [s for s in find_stubs(supervised.tritonserver_pid()) if s.model == GENERATE_MODEL]
        # Frozen, the stub takes both requests in and answers nothing; killed, it strands them.
        os.kill(stub.pid, signal.SIGSTOP)
        frozen.set()
        time.sleep(1.0)
        os.kill(stub.pid, signal.SIGKILL)
        for thread in threads:
            thread.join(120)
    print("\nstranded calls ended and served elsewhere after: "
          + ", ".join(f"{name} {seconds:.1f}s" for name, (_, _, seconds) in results.items()))
    assert results["gRPC stream"][0] == expected
    assert results["HTTP generate"][:2] == (expected, generation_server.http_url)
    # Both waited for the kill (1 s), then ended well before their 120 s deadline.
    assert all(1.0 <= seconds < 30 for _, _, seconds in results.values())
