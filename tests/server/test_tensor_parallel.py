"""Tensor parallelism on a real tritonserver: tp=2 over gloo on CPU, against tp=1.

One server (explicit model control) serves the same tiny Llama twice, as one
instance (``tiny_tp1``) and sharded over two ranks (``tiny_tp2``: a leader
stub and one worker process). The tests run in order, each leaving the next a
loaded model:

1. greedy outputs of concurrent requests of different lengths (rows join and
   leave the running batch, so the workers' caches follow row moves) are equal;
2. unloading stops the worker (shutdown reaches every rank);
3. a worker killed by SIGKILL fails the request in flight with an error that
   names the rank, and its leader ends itself (for the supervisor to reload);
4. a leader stub killed by SIGKILL takes its worker with it.

"No orphan" is checked on the pids this test saw, never a global process list.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from ds_triton.repository.machine import Machine
from ds_triton.repository.scaffold import add_model
from ds_triton.server_process.procfs import children_of, read_stat
from ds_triton.server_process.triton_api import TritonApi
from ds_triton.server_process.tritonserver import TritonServer
from ds_triton.spec import DeploymentSpec, GenerationSpec, ModelSpec
from tests.conftest import StartServer

pytestmark = [pytest.mark.server, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
CHECKPOINT = ROOT / "model_repository" / "text_generation" / "1" / "checkpoint"
PROMPTS = [
    ("Hello", 12),
    ("The quick brown fox jumps over the lazy dog and keeps running", 5),
    ("a b", 9),
    ("tensor parallel ranks meet in their all-reduces", 3),
    ("one more prompt, longer than most of the others around it", 7),
]
LOAD_TIMEOUT_S = 600.0


def write_model(repository: Path, name: str, tensor_parallel: int) -> None:
    version = repository / name / "1"
    shutil.copytree(CHECKPOINT, version / "checkpoint")
    spec = ModelSpec(
        name=name,
        task="generation",
        checkpoint="checkpoint",
        deployment=DeploymentSpec(device="cpu", threads_per_instance=1, tensor_parallel=tensor_parallel),
        generation=GenerationSpec(
            max_concurrent_sequences=4, max_queued_requests=16, max_prompt_tokens=64,
            max_tokens_limit=32, max_batch_total_tokens=512, max_prefill_tokens=16,
        ),
    )
    add_model(repository, spec, Machine(cores=2), replace=True)


@pytest.fixture(scope="module")
def server(start_server: StartServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    repository = tmp_path_factory.mktemp("tp-repo")
    write_model(repository, "tiny_tp1", 1)
    write_model(repository, "tiny_tp2", 2)
    assert "KIND_MODEL" in (repository / "tiny_tp2" / "config.pbtxt").read_text()
    with start_server(repository, models=["tiny_tp1", "tiny_tp2"], model_control="explicit") as running:
        yield running


def api(server: TritonServer) -> TritonApi:
    return TritonApi(server.http_url.removeprefix("http://"), timeout=30.0)


def generate(server: TritonServer, model: str, prompt: str, max_tokens: int) -> tuple[int, str]:
    body = {
        "text_input": prompt,
        "exclude_input_in_output": True,
        "parameters": {"temperature": 0, "max_tokens": max_tokens, "ignore_eos": True},
    }
    request = urllib.request.Request(
        f"http://{server.http_url.removeprefix('http://')}/v2/models/{model}/generate",
        data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())["text_output"]
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def leader_and_workers(server: TritonServer, model: str) -> tuple[int, list[int]]:
    """The model's one instance stub and its worker processes (children of the stub)."""
    stubs = [s for s in server.stubs() if s.model == model]
    assert len(stubs) == 1, f"expected one instance stub of {model}, found {stubs}"
    leader = stubs[0].pid
    workers = [s.pid for s in children_of(leader) if not s.is_zombie]
    return leader, workers


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        time.sleep(0.2)


def gone(pids: list[int]) -> bool:
    """Every pid has exited (a zombie waiting for its parent counts as exited)."""
    stats = [read_stat(pid) for pid in pids]
    return all(stat is None or stat.is_zombie for stat in stats)


def test_tp2_greedy_equals_tp1_for_concurrent_requests_of_different_lengths(server: TritonServer) -> None:
    _leader, workers = leader_and_workers(server, "tiny_tp2")
    assert len(workers) == 1, "tensor_parallel 2 runs one worker beside the leader"
    with ThreadPoolExecutor(len(PROMPTS) * 2) as pool:
        one = [pool.submit(generate, server, "tiny_tp1", p, n) for p, n in PROMPTS]
        two = [pool.submit(generate, server, "tiny_tp2", p, n) for p, n in PROMPTS]
        expected = [f.result() for f in one]
        got = [f.result() for f in two]
    assert all(status == 200 for status, _ in expected), expected
    assert got == expected


def test_unload_stops_every_rank(server: TritonServer) -> None:
    leader, workers = leader_and_workers(server, "tiny_tp2")
    api(server).unload("tiny_tp2")
    wait_until(lambda: gone([leader, *workers]), 60, f"leader {leader} and workers {workers} exit")
    api(server).load("tiny_tp2", timeout=LOAD_TIMEOUT_S)
    assert generate(server, "tiny_tp2", "Hello", 4)[0] == 200


def test_killed_worker_fails_requests_with_its_rank_and_ends_the_leader(server: TritonServer) -> None:
    leader, workers = leader_and_workers(server, "tiny_tp2")
    os.kill(workers[0], signal.SIGKILL)
    status, text = generate(server, "tiny_tp2", "Hello", 8)
    assert status != 200
    assert "rank 1 was killed by signal SIGKILL" in text, text
    # The leader ends itself so that `ds-triton serve` reloads the model; nothing is left.
    wait_until(lambda: gone([leader, *workers]), 30, "the broken group's leader exits")
    # Bring the model back for the next test, as the supervisor would.
    api(server).unload("tiny_tp2")
    wait_until(lambda: not [s for s in server.stubs() if s.model == "tiny_tp2"], 60, "unloaded")
    api(server).load("tiny_tp2", timeout=LOAD_TIMEOUT_S)


def test_sigkill_of_the_leader_stub_ends_its_workers(server: TritonServer) -> None:
    leader, workers = leader_and_workers(server, "tiny_tp2")
    assert generate(server, "tiny_tp2", "Hello", 4)[0] == 200
    os.kill(leader, signal.SIGKILL)
    wait_until(lambda: gone(workers), 15, f"workers {workers} exit after their leader was killed")
