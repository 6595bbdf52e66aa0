"""Memory on a real server stays bounded and comes back (issue 9 item 4).

One server with the shipped models, watched from ``/proc`` (``ds_triton_perf.memory``,
the helper the bench's soak scenario uses too):

1. a burst of maximum-length embedding batches, one per instance at once: every
   embedding instance's peak RSS stays within its post-load RSS plus the
   documented activation budget, and within 10 s of the burst every instance is
   back within 100 MB of its post-load RSS;
2. after a warm-up of mixed requests (both models, good and bad inputs, lengths
   up to the limits), more mixed requests grow the total RSS by less than 100 MB;
3. the server's open file descriptors and ``/dev/shm`` regions are what they were.

Sized for CI: 200 warm-up and 600 measured requests, where the issue's target
says 1,000 and 10,000 (the bench's soak scenario runs those). On the 2-core dev
machine at a load average of about 30 (other suites running), 300 requests of
this mix took 189 s; the generations of 512 tokens take most of it.
"""

from __future__ import annotations

import concurrent.futures
import json
import random
import time
import urllib.error
import urllib.request
from collections.abc import Callable

import numpy as np
import pytest
import tritonclient.http as httpclient

from ds_triton.server_process.procfs import read_status
from ds_triton.server_process.tritonserver import TritonServer
from ds_triton_perf.memory import MemorySample, sample
from tests.conftest import StartServer, shipped_models

pytestmark = [pytest.mark.server, pytest.mark.slow]

EMBEDDING = "text_embedding"
GENERATION = "text_generation"
MB = 1024 * 1024

# Documented in the README ("Memory"): with max_tokens_per_forward 4096, MiniLM in
# fp32 on CPU peaks this far above its post-load RSS (activations, plus library
# code the first long forward pages in).
ACTIVATION_BUDGET_MB = 150
BACK_WITHIN_MB = 100
SETTLE_S = 10
GROWTH_LIMIT_MB = 100
WARMUP_REQUESTS = 200
MEASURED_REQUESTS = 600
CLIENTS = 4
MAX_WORDS = 300  # over MiniLM's 256-token limit: truncated and flagged

WORDS = [
    *("the", "a", "of", "to", "and", "in", "is", "for", "on", "with", "as", "by", "at", "from"),
    *("model", "server", "request", "batch", "latency", "throughput", "queue", "token", "text"),
    *("embedding", "vector", "search", "query", "user", "document", "memory", "compute", "kernel"),
    *("thread", "cache", "weather", "travel", "music", "river", "mountain", "ocean", "forest"),
]


def words(rng: random.Random, count: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(count))


def embed(server: TritonServer, rows: list[bytes]) -> bool:
    """One embedding request; True when it succeeded."""
    client = httpclient.InferenceServerClient(server.http_url, network_timeout=600.0)
    try:
        tensor = httpclient.InferInput("text", [len(rows), 1], "BYTES")
        tensor.set_data_from_numpy(np.array(rows, dtype=object).reshape(-1, 1))
        client.infer(EMBEDDING, [tensor])
        return True
    except Exception:  # bad input is expected to fail: the server answered
        return False
    finally:
        client.close()


def generate(server: TritonServer, prompt: str, max_tokens: int) -> bool:
    body = json.dumps({"text_input": prompt, "max_tokens": max_tokens}).encode()
    url = f"http://{server.http_url}/v2/models/{GENERATION}/generate"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=body), timeout=600) as response:
            response.read()
        return True
    except urllib.error.HTTPError as error:  # a clear 4xx/5xx answer to bad input
        error.read()
        return False


def mixed_request(server: TritonServer, seed: int) -> bool:
    """One request of the mix: mostly short texts and prompts, some at the limits, some bad."""
    rng = random.Random(seed)
    kind = rng.random()
    if kind < 0.45:
        lengths = [rng.randint(1, MAX_WORDS) if rng.random() < 0.15 else rng.randint(1, 24) for _ in range(8)]
        return embed(server, [words(rng, n).encode() for n in lengths[: rng.randint(1, 8)]])
    if kind < 0.55:
        return embed(server, rng.choice([[b""], [b"\xff\xfe bad utf-8"], [b"fine", b"   "]]))
    if kind < 0.9:
        prompt_words = rng.randint(200, 480) if rng.random() < 0.1 else rng.randint(1, 40)
        max_tokens = 512 if rng.random() < 0.02 else rng.randint(1, 24)
        return generate(server, words(rng, prompt_words), max_tokens)
    return generate(server, words(rng, rng.randint(1, 8)), rng.choice([0, 100_000]))


def run_mixed(server: TritonServer, seeds: range) -> list[bool]:
    with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
        return list(pool.map(lambda seed: mixed_request(server, seed), seeds))


def rss_mb(snapshot: MemorySample) -> dict[str, float]:
    return {role: rss / MB for role, rss in snapshot.rss_by_role().items()}


def wait_until(condition: Callable[[], bool], timeout: float, step: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(step)


@pytest.mark.timeout(1800)
def test_memory_is_bounded_and_comes_back(start_server: StartServer) -> None:
    with start_server(models=shipped_models()) as server:
        assert server.pid is not None
        start = sample(server.pid)
        post_load = rss_mb(start)
        embedding_pids = {p.role: p.pid for p in start.processes if p.role.startswith(f"stub {EMBEDDING}")}
        assert len(embedding_pids) >= 2, start.processes

        # 1. One maximum-length batch per embedding instance, all at once.
        rng = random.Random(0)
        batches = [[words(rng, MAX_WORDS).encode() for _ in range(64)] for _ in embedding_pids]
        with concurrent.futures.ThreadPoolExecutor(len(batches)) as pool:
            assert all(pool.map(lambda rows: embed(server, rows), batches))
        burst_end = time.monotonic()
        for role, pid in embedding_pids.items():
            peak = read_status(pid)["VmHWM"] / MB
            assert peak - post_load[role] <= ACTIVATION_BUDGET_MB, (role, post_load[role], peak)

        def back_to_post_load() -> bool:
            now = rss_mb(sample(server.pid))
            return all(now[role] - post_load[role] <= BACK_WITHIN_MB for role in embedding_pids)

        assert wait_until(back_to_post_load, SETTLE_S), (post_load, rss_mb(sample(server.pid)))
        assert time.monotonic() - burst_end <= SETTLE_S + 1

        # 2. Mixed traffic: growth after the warm-up.
        outcomes = run_mixed(server, range(WARMUP_REQUESTS))
        time.sleep(3)  # idle: instances trim their heaps
        warm = sample(server.pid)
        outcomes += run_mixed(server, range(WARMUP_REQUESTS, WARMUP_REQUESTS + MEASURED_REQUESTS))
        time.sleep(3)
        end = sample(server.pid)
        growth = (end.total_rss_bytes - warm.total_rss_bytes) / MB
        assert growth < GROWTH_LIMIT_MB, (rss_mb(warm), rss_mb(end))
        assert 0.5 < sum(outcomes) / len(outcomes) < 0.95  # good and bad requests both ran

        # 3. Nothing leaks: descriptors and shared-memory regions as at the start.
        fds_back = wait_until(lambda: sample(server.pid).fds <= start.fds, 10)
        assert fds_back, (start.fds, sample(server.pid).fds)
        assert sample(server.pid).shm_regions == start.shm_regions
