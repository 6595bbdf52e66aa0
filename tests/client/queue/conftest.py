"""Real servers for the queue tests: nats-server with JetStream on file storage, Triton replicas
serving text_embedding, and workers as ``ds-triton-client worker`` processes.

The replicas serve the shipped text_embedding without its latency budget (no queue policy): these
tests inject their own faults and count every job, and on a shared, loaded machine the shipped
500 ms queue timeout sheds requests at random, whose retries can run out. The worker's retry of
``OverloadedError`` is tested on fakes (test_worker_logic.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from ds_triton.repository.layout import ModelFolder
from ds_triton.repository.writer import render_folder, write_rendered
from ds_triton_client.queue.local_nats import LocalNatsServer, free_port
from tests.client.conftest import EMBED_MODEL, Replica

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNatsServer]:
    server = LocalNatsServer(tmp_path_factory.mktemp("nats")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def stream() -> str:
    """A queue of the test's own on the shared server."""
    return f"q{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def unshed_repository(embedding_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped text_embedding with ``latency_budget_ms`` null, rendered (see the module docstring)."""
    repository = tmp_path_factory.mktemp("queue-repo")
    shutil.copytree(embedding_repository / EMBED_MODEL, repository / EMBED_MODEL)
    spec_path = repository / EMBED_MODEL / "1" / "model.json"
    spec = json.loads(spec_path.read_text())
    spec["batching"]["latency_budget_ms"] = None
    spec_path.write_text(json.dumps(spec, indent=2))
    write_rendered(render_folder(ModelFolder(repository / EMBED_MODEL)))
    assert "default_queue_policy" not in (repository / EMBED_MODEL / "config.pbtxt").read_text()
    return repository


@pytest.fixture(scope="module")
def replica_a(unshed_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replica]:
    """This module's first replica (it replaces the client tests' shared one: no queue policy)."""
    replica = Replica(unshed_repository, tmp_path_factory.mktemp("replica-a")).start()
    try:
        yield replica
    finally:
        replica.stop()


@pytest.fixture(scope="module")
def replica_c(unshed_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replica]:
    """The second replica of this module (a test may kill it; ``ensure_running`` brings it back)."""
    replica = Replica(unshed_repository, tmp_path_factory.mktemp("replica-c")).start()
    try:
        yield replica
    finally:
        replica.stop()


def ensure_running(replica: Replica) -> None:
    if replica.server is None or replica.server.poll() is not None:
        replica.start()


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "ds_triton_client.cli", *args]


class WorkerProcess:
    """``ds-triton-client worker`` as its own process (SIGKILL/SIGTERM reach it as in production)."""

    def __init__(self, nats_url: str, triton_urls: Sequence[str], stream: str, log_dir: Path,
                 *args: str) -> None:  # fmt: skip
        self.metrics_port = free_port()
        self.log = log_dir / f"worker-{uuid.uuid4().hex[:6]}.log"
        command = cli("--url", ",".join(triton_urls), "--timeout", "120", "worker", "--nats", nats_url,
                      "--stream", stream, "--metrics-port", str(self.metrics_port),
                      "--metrics-host", "127.0.0.1", *args)  # fmt: skip
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)

    def wait_ready(self, timeout: float = 60) -> WorkerProcess:
        deadline = time.monotonic() + timeout
        while " ready: " not in self.output:
            assert self.process.poll() is None, f"worker exited:\n{self.output[-3000:]}"
            assert time.monotonic() < deadline, f"worker not ready:\n{self.output[-3000:]}"
            time.sleep(0.1)
        return self

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def metrics(self) -> dict[str, float]:
        """Unlabelled and summed-over-labels samples of the worker's /metrics."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        values: dict[str, float] = {}
        for line in text.splitlines():
            found = re.match(r"^([a-z_]+)(\{[^}]*\})? ([0-9.e+-]+)$", line)
            if found:
                values[found[1]] = values.get(found[1], 0.0) + float(found[3])
        return values

    def signal(self, signum: int) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signum)

    def stop(self, timeout: float = 30) -> int:
        self.signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[list[WorkerProcess]]:
    """Started workers go in this list; any still running at the end are stopped."""
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        if worker.process.poll() is None:
            worker.process.kill()
            worker.process.wait()


def run_async(coroutine: object) -> object:
    return asyncio.run(coroutine)  # type: ignore[arg-type]


def write_texts(path: Path, texts: Sequence[str]) -> Path:
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    return path
