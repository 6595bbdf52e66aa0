"""The model supervisor in `ds-triton serve`, against a real tritonserver.

A stub killed under traffic takes its model out of readiness on HTTP and gRPC
within 2 s and comes back by itself, without touching the other model; crashes
that repeat leave the model down with the reason, until its files change.
The server runs with an admin key: the supervisor uses the restricted repository API.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import tritonclient.grpc as grpcclient

from ds_triton.server_process.stubs import Stub, find_stubs
from tests.serve_process import ServeProcess, serving

pytestmark = [pytest.mark.server, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
EMBED, GENERATE = "text_embedding", "text_generation"
ADMIN_KEY = "supervisor-test-key-0123456789"
BODY = json.dumps({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1, 1], "data": ["hello"]}]})


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    work = tmp_path_factory.mktemp("supervised")
    repository = work / "model_repository"
    for model in (EMBED, GENERATE):
        shutil.copytree(ROOT / "model_repository" / model, repository / model,
                        ignore=shutil.ignore_patterns("__pycache__"), symlinks=True)
    key_file = work / "admin.key"
    key_file.write_text(ADMIN_KEY)
    key_file.chmod(0o600)
    with serving(repository, work, extra_args=[
        "--admin-key-file", str(key_file), "--max-crashes", "2", "--crash-window", "600",
    ]) as process:  # fmt: skip
        yield process


def http_ready(serve: ServeProcess, model: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{serve.http_url}/v2/models/{model}/ready", timeout=5) as r:
            return bool(r.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def grpc_ready(serve: ServeProcess, model: str) -> bool:
    client = grpcclient.InferenceServerClient(serve.grpc_url)
    try:
        return bool(client.is_model_ready(model))
    finally:
        client.close()


def stubs_of(serve: ServeProcess, model: str) -> list[Stub]:
    return [s for s in find_stubs(serve.tritonserver_pid()) if s.model == model]


@dataclass
class Traffic:
    """Embedding requests in a loop over HTTP: (status, seconds, body) of each."""

    serve: ServeProcess
    results: list[tuple[int, float, str]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> Traffic:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)

    def _run(self) -> None:
        host, port = self.serve.http_url.split(":")
        while not self._stop.is_set():
            started = time.monotonic()
            connection = http.client.HTTPConnection(host, int(port), timeout=30)
            try:
                connection.request("POST", f"/v2/models/{EMBED}/infer", BODY)
                response = connection.getresponse()
                body = response.read().decode(errors="replace")
                self.results.append((response.status, time.monotonic() - started, body))
            except OSError as exc:
                self.results.append((0, time.monotonic() - started, repr(exc)))
            finally:
                connection.close()
            time.sleep(0.02)


def wait_until(condition: object, timeout: float, step: float = 0.05) -> float:
    started = time.monotonic()
    while not condition():  # type: ignore[operator]
        assert time.monotonic() - started < timeout, f"not within {timeout}s"
        time.sleep(step)
    return time.monotonic() - started


def test_a_killed_stub_is_not_ready_within_2s_then_reloaded_while_the_other_model_serves(
    serve: ServeProcess,
) -> None:
    victim = stubs_of(serve, EMBED)[0]
    (generation_stub,) = stubs_of(serve, GENERATE)
    mark = len(serve.output)
    with Traffic(serve) as traffic:
        time.sleep(1)
        killed_at = time.monotonic()
        os.kill(victim.pid, signal.SIGKILL)
        not_ready_s = wait_until(lambda: not http_ready(serve, EMBED) and not grpc_ready(serve, EMBED), 10)
        assert http_ready(serve, GENERATE) and grpc_ready(serve, GENERATE)
        serve.wait_for_output(rf"{EMBED}: reloaded in [\d.]+s; serving", timeout=400, after=mark)
        reload_s = time.monotonic() - killed_at
        assert http_ready(serve, EMBED) and grpc_ready(serve, EMBED)
        time.sleep(1)
    print(f"\nSIGKILL of {victim.instance}: not ready on HTTP and gRPC after {not_ready_s:.2f}s, "
          f"serving again after {reload_s:.1f}s")
    assert not_ready_s <= 2.0
    assert f"stub {victim.instance} (pid {victim.pid}) killed by SIGKILL" in serve.output[mark:]

    after = [r for r in traffic.results if r[0] == 200]
    failures = [r for r in traffic.results if r[0] != 200]
    print(f"traffic: {len(traffic.results)} requests, {len(failures)} failed: "
          f"{sorted({(status, body[:80]) for status, _, body in failures})}")
    assert after and traffic.results[-1][0] == 200  # serving again at the end
    assert max(seconds for _, seconds, _ in traffic.results) < 10  # nothing hung
    for status, _, body in failures:  # each failure says why: dead stub, or model not ready
        assert (status == 500 and "is not healthy" in body) or (
            status in (400, 404) and ("no available versions" in body or "unknown model" in body)
        ), (status, body)
    # The other model was never touched.
    assert [s.pid for s in stubs_of(serve, GENERATE)] == [generation_stub.pid]


def supervisor_metrics(serve: ServeProcess) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{serve.supervisor_metrics_port}/metrics", timeout=5) as r:
        return str(r.read().decode())


def test_repeated_crashes_leave_the_model_down_with_the_reason_until_its_files_change(
    serve: ServeProcess,
) -> None:
    mark = len(serve.output)
    (first,) = stubs_of(serve, GENERATE)
    os.kill(first.pid, signal.SIGSEGV)
    serve.wait_for_output(rf"{GENERATE}: reloaded in", timeout=400, after=mark)
    wait_until(lambda: len(stubs_of(serve, GENERATE)) == 1, 30, step=0.2)
    (second,) = stubs_of(serve, GENERATE)
    time.sleep(1.5)  # let the supervisor start watching the new stub
    os.kill(second.pid, signal.SIGKILL)
    down = serve.wait_for_output(rf"{GENERATE}: DOWN: (.*)", timeout=30, after=mark)
    print(f"\n{down.group(0)}")
    assert "2 crashes within 600s" in down.group(1) and "killed by SIGKILL" in down.group(1)
    assert f"stub {first.instance} (pid {first.pid}) killed by SIGSEGV" in serve.output[mark:]
    time.sleep(3)  # no further reload
    assert not http_ready(serve, GENERATE) and not grpc_ready(serve, GENERATE)
    assert http_ready(serve, EMBED)
    metrics = supervisor_metrics(serve)
    assert f'ds_triton_supervisor_model_down{{model="{GENERATE}"}} 1' in metrics
    assert f'ds_triton_supervisor_stub_crashes_total{{model="{GENERATE}"}} 2' in metrics

    # A changed file (the operator's fix) loads it again with a clean slate.
    spec = serve.log.parent / "model_repository" / GENERATE / "1" / "model.json"
    spec.write_text(spec.read_text())
    serve.wait_for_output(rf"{GENERATE}: loaded in", timeout=400, after=mark)
    assert http_ready(serve, GENERATE)
    assert f'ds_triton_supervisor_model_down{{model="{GENERATE}"}} 0' in supervisor_metrics(serve)
