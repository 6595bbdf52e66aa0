"""Gateways for the tests: the real ``ds-triton-gateway`` process, or the same app in this process.

The main gateway of the tests is the command itself (``python -m
ds_triton_gateway`` on a free port, as ``ds-triton serve`` starts it). Gateways
with unusual settings (tiny timeouts, one request in flight) run the same app
under uvicorn on a thread of the test process, which spares the shared machine
another interpreter start.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest

from ds_triton.server_process.tritonserver import free_ports
from ds_triton_gateway.settings import GatewaySettings
from tests.conftest import MODEL_REPOSITORY, ROOT
from tests.server.generation_client import CHECKPOINT, HFReference, hf_greedy_reference

START_TIMEOUT_S = 180.0


@pytest.fixture(scope="session")
def hf_reference() -> HFReference:
    """HF ``generate`` (greedy) on the shipped generation checkpoint, in this process."""
    return hf_greedy_reference(CHECKPOINT)


@dataclass
class Gateway:
    """A running gateway: its base URL and how to reach it with the OpenAI SDK."""

    url: str
    log: Path | None = None

    def openai(self, api_key: str = "unused", **options: Any) -> openai.OpenAI:
        """The real SDK, without its own retries (each call is one request)."""
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=api_key, max_retries=0,
                             timeout=options.pop("timeout", 120.0), **options)  # fmt: skip

    def get(self, path: str, headers: Mapping[str, str] | None = None) -> tuple[int, str]:
        request = urllib.request.Request(self.url + path, headers=dict(headers or {}))
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def metric(self, name: str, **labels: str) -> float:
        """The sum of a metric's samples that carry ``labels`` (0 when none)."""
        _, text = self.get("/metrics")
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and all(f'{k}="{v}"' in line for k, v in labels.items()):
                head, value = line.rsplit(" ", 1)
                if head.split("{")[0] == name:
                    total += float(value)
        return total

    def wait_healthy(self, process: subprocess.Popen[bytes] | None = None) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                output = self.log.read_text() if self.log else ""
                raise AssertionError(f"the gateway exited with {process.returncode}:\n{output[-3000:]}")
            with contextlib.suppress(OSError):
                if self.get("/health")[0] == 200:
                    return
            time.sleep(0.2)
        raise AssertionError(f"the gateway at {self.url} did not answer within {START_TIMEOUT_S:.0f}s")


@contextlib.contextmanager
def gateway_process(
    urls: str,
    work_dir: Path,
    repository: Path = MODEL_REPOSITORY,
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> Iterator[Gateway]:
    """``python -m ds_triton_gateway`` on a free port in front of ``urls``; stopped with SIGTERM."""
    (port,) = free_ports(1)
    log = work_dir / f"gateway-{port}.log"
    command = [sys.executable, "-m", "ds_triton_gateway", "--url", urls, "--port", str(port),
               "--model-repository", str(repository), *args]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                                   env={**os.environ, **(env or {})})  # fmt: skip
        gateway = Gateway(f"http://127.0.0.1:{port}", log)
        try:
            gateway.wait_healthy(process)
            yield gateway
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextlib.contextmanager
def gateway_in_process(settings: GatewaySettings) -> Iterator[Gateway]:
    """The gateway app under uvicorn on a thread of this process, on a free port."""
    import dataclasses

    import uvicorn

    from ds_triton_gateway.app import create_app

    (port,) = free_ports(1)
    settings = dataclasses.replace(settings, host="127.0.0.1", port=port)
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port,
                                           log_level="warning", timeout_graceful_shutdown=5))  # fmt: skip
    thread = threading.Thread(target=server.run, name=f"gateway-{port}", daemon=True)
    thread.start()
    gateway = Gateway(f"http://127.0.0.1:{port}")
    try:
        gateway.wait_healthy()
        yield gateway
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@contextlib.contextmanager
def silent_upstream() -> Iterator[str]:
    """A ``grpc://`` address that accepts connections and never answers (a stalled replica)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                held.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"grpc://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=5)
        for connection in held:
            connection.close()
        listener.close()
