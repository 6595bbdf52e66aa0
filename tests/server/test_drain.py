"""Stopping `ds-triton serve`: a clean drain on SIGTERM, and no orphans when tritonserver dies.

SIGTERM with 64 generation streams in flight (gRPC and HTTP SSE) and embedding
traffic: new requests are refused at once, every accepted stream finishes,
everything exits by itself within the drain timeout + 5 s, and no stub or
/dev/shm region of that server is left. SIGKILL of tritonserver: serve kills its
stubs at once, removes their regions and exits non-zero. Both scoped to the
processes and regions these servers started (other servers share the machine).
"""

from __future__ import annotations

import http.client
import json
import os
import queue
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from ds_triton.server_process.shm import SHM_DIR
from ds_triton.server_process.stubs import find_stubs
from ds_triton.server_process.tritonserver import Ports, ServerOptions, TritonServer
from tests.serve_process import ServeProcess, group_alive, serving

pytestmark = [pytest.mark.server, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
GENERATE, EMBED = "text_generation", "text_embedding"
MAX_TOKENS = 32
GRPC_STREAMS, SSE_STREAMS = 48, 16
SAMPLING = {"max_tokens": MAX_TOKENS, "ignore_eos": True, "temperature": 0}


def copy_models(repository: Path, *models: str) -> Path:
    for model in models:
        shutil.copytree(ROOT / "model_repository" / model, repository / model,
                        ignore=shutil.ignore_patterns("__pycache__"), symlinks=True)
    return repository


@dataclass
class StreamResult:
    pieces: int = 0
    finish_reason: str | None = None
    error: str | None = None
    started: threading.Event = field(default_factory=threading.Event)  # first piece arrived
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def completed(self) -> bool:
        return self.error is None and self.finish_reason == "length"


def grpc_stream(url: str, result: StreamResult) -> None:
    """One request on its own gRPC stream (errors carry no request id on a shared one)."""

    def tensor(name: str, value: Any, datatype: str) -> grpcclient.InferInput:
        item = grpcclient.InferInput(name, [1], datatype)
        item.set_data_from_numpy(np.array([value], dtype=bool if datatype == "BOOL" else object))
        return item

    events: queue.Queue[tuple[Any, Any]] = queue.Queue()
    client = grpcclient.InferenceServerClient(url)
    client.start_stream(callback=lambda result, error: events.put((result, error)))
    try:
        client.async_stream_infer(GENERATE, [
            tensor("text_input", b"tell me a story", "BYTES"), tensor("stream", True, "BOOL"),
            tensor("sampling_parameters", json.dumps(SAMPLING).encode(), "BYTES"),
            tensor("return_finish_reason", True, "BOOL"),
        ], enable_empty_final_response=True)  # fmt: skip
        while True:
            response, error = events.get(timeout=120)
            if error is not None:
                result.error = str(error)
                return
            reasons = response.as_numpy("finish_reason")
            if reasons is not None and reasons.size and reasons.reshape(-1)[0]:
                result.finish_reason = reasons.reshape(-1)[0].decode()
            if response.as_numpy("text_output") is not None:
                result.pieces += 1
                result.started.set()
            if response.get_response().parameters["triton_final_response"].bool_param:
                return
    except queue.Empty:
        result.error = "no response for 120 s"
    finally:
        client.stop_stream()
        client.close()
        result.done.set()


def sse_stream(address: str, result: StreamResult) -> None:
    host, port = address.split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=120)
    body = {"text_input": "tell me a story", "return_finish_reason": True,
            "parameters": {"stream": True, **SAMPLING}}
    try:
        connection.request("POST", f"/v2/models/{GENERATE}/generate_stream", json.dumps(body))
        response = connection.getresponse()
        for raw in response:
            line = raw.decode().strip()
            if not line.startswith("data:"):
                continue
            event = json.loads(line[5:])
            if "error" in event:
                result.error = event["error"]
                return
            result.pieces += 1
            result.started.set()
            reason = event.get("finish_reason")
            if reason:
                result.finish_reason = reason[0] if isinstance(reason, list) else reason
        if response.status != 200:
            result.error = f"HTTP {response.status}"
    except OSError as exc:
        result.error = repr(exc)
    finally:
        connection.close()
        result.done.set()


def new_request_error(serve: ServeProcess) -> tuple[float, str]:
    """An embedding request sent now: how long until it was answered, and with what."""
    started = time.monotonic()
    host, port = serve.http_url.split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    body = json.dumps({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1, 1], "data": ["hi"]}]})
    try:
        connection.request("POST", f"/v2/models/{EMBED}/infer", body)
        response = connection.getresponse()
        answer = f"HTTP {response.status} {response.read().decode(errors='replace')}"
    except OSError as exc:
        answer = f"refused: {exc!r}"
    finally:
        connection.close()
    return time.monotonic() - started, answer


def test_sigterm_with_64_streams_in_flight_drains_them_and_exits_by_itself(tmp_path: Path) -> None:
    repository = copy_models(tmp_path / "model_repository", EMBED, GENERATE)
    with serving(repository, tmp_path) as serve:
        server_pid, prefix = serve.tritonserver_pid(), serve.shm_prefix()
        assert any(SHM_DIR.glob(f"{prefix}*"))
        results = [StreamResult() for _ in range(GRPC_STREAMS + SSE_STREAMS)]
        threads = [
            threading.Thread(target=grpc_stream if i < GRPC_STREAMS else sse_stream,
                             args=(serve.grpc_url if i < GRPC_STREAMS else serve.http_url, r), daemon=True)
            for i, r in enumerate(results)
        ]  # fmt: skip
        for thread in threads:
            thread.start()
        # Every request accepted: 16 decode at once, the others wait in the engine's queue.
        deadline = time.monotonic() + 120
        while sum(r.started.is_set() for r in results) < 16 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sum(r.started.is_set() for r in results) >= 16, [r.error for r in results if r.error]
        mark = len(serve.output)
        stopped_at = time.monotonic()
        serve.process.send_signal(signal.SIGTERM)
        serve.wait_for_output("stopping:", timeout=10, after=mark)
        refused_in, refused = new_request_error(serve)
        code = serve.process.wait(timeout=60)
        exit_s = time.monotonic() - stopped_at
        for thread in threads:
            thread.join(30)
        left = group_alive(server_pid)
        regions = sorted(p.name for p in SHM_DIR.glob(f"{prefix}*"))
    completed = sum(r.completed for r in results)
    print(f"\nSIGTERM with {len(results)} streams in flight: {completed} completed, serve exited {code} "
          f"after {exit_s:.1f}s; a new request then got in {refused_in * 1000:.0f} ms: {refused[:100]}")
    print(serve.output[mark:].strip())
    assert code == 0
    assert exit_s <= 30 + 5
    assert "no available versions" in refused or "unknown model" in refused or refused.startswith("refused")
    assert refused_in < 5
    assert completed == len(results), sorted({r.error or str(r.finish_reason) for r in results})
    assert left == [] and regions == []
    assert "killed" not in serve.output[mark:]


def test_when_tritonserver_dies_serve_kills_its_stubs_removes_regions_and_exits_non_zero(
    tmp_path: Path,
) -> None:
    repository = copy_models(tmp_path / "model_repository", GENERATE)
    with serving(repository, tmp_path) as serve:
        server_pid, prefix = serve.tritonserver_pid(), serve.shm_prefix()
        stubs = find_stubs(server_pid)
        assert stubs and any(SHM_DIR.glob(f"{prefix}*"))
        killed_at = time.monotonic()
        os.kill(server_pid, signal.SIGKILL)
        code = serve.process.wait(timeout=30)
        took = time.monotonic() - killed_at
    print(f"\ntritonserver SIGKILLed: serve exited {code} after {took:.2f}s")
    assert code == 128 + signal.SIGKILL
    assert took < 5
    assert group_alive(server_pid) == []
    assert not any(SHM_DIR.glob(f"{prefix}*"))
    assert "tritonserver exited unexpectedly (killed by SIGKILL)" in serve.output


@pytest.fixture
def launched(tmp_path: Path) -> Iterator[TritonServer]:
    repository = copy_models(tmp_path / "model_repository", GENERATE)
    options = ServerOptions(repository, Ports.free(), run_dir=tmp_path / "run", model_control="none")
    with (tmp_path / "server.log").open("wb") as log:
        server = TritonServer(options, log=log).start()
        try:
            server.wait_ready(240, [GENERATE])
            yield server
        finally:
            server.stop()


def test_launcher_stop_ends_the_stubs_of_a_server_that_already_died(launched: TritonServer) -> None:
    assert launched.pid is not None
    stubs = launched.stubs()
    assert stubs
    os.kill(launched.pid, signal.SIGKILL)
    launched.wait()
    launched.stop()  # used to return at once here, leaving the stubs running
    assert group_alive(launched.pid) == []
    assert not any(SHM_DIR.glob(f"{launched.options.shm_prefix}*"))
