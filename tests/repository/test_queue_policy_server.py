"""The rendered queue policy on a real server: what an overloaded model answers, and the bounds.

The model here holds requests on purpose: a batcher that waits up to 10 s to
fill a preferred batch of 8 keeps single requests queued, so each bound acts
alone and deterministically: the queue size (immediate refusal), the queue
timeout derived from ``latency_budget_ms`` (refusal after it, never the 10 s
batch), and the per-request ``timeout``, honoured only downwards
(``allow_timeout_override``; rendering it off is tested with the renderer).
Latency targets under real overload live in the benchmark (``ds-triton-perf
bench``), not here.
"""

from __future__ import annotations

import re
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from ds_triton.repository.layout import SHIM_SOURCE
from ds_triton.repository.queue_policy import derived_timeout_us
from ds_triton.repository.render import config_text, render_config
from ds_triton.server_process.tritonserver import TritonServer
from ds_triton.spec import ModelSpec
from ds_triton_client import Client, OverloadedError
from tests.conftest import StartServer
from tests.repository.conftest import MINILM

pytestmark = [pytest.mark.server, pytest.mark.slow]

BUDGET_MS = 6000
TIMEOUT_S = derived_timeout_us(BUDGET_MS) / 1e6  # 3 s in the queue, then UNAVAILABLE
QUEUE_SIZE = 3
QUEUE_FULL = "Exceeds maximum queue size"
TIMED_OUT = "Request timeout expired"


def held_spec() -> ModelSpec:
    return ModelSpec.from_dict({
        "name": "held", "task": "embedding", "checkpoint": MINILM,
        "batching": {"max_batch_size": 8, "preferred_batch_sizes": [8], "max_queue_delay_us": 10_000_000,
                     "latency_budget_ms": BUDGET_MS, "max_queue_size": QUEUE_SIZE,
                     "allow_timeout_override": True},
        "deployment": {"device": "cpu", "instances_per_device": 1, "threads_per_instance": 1},
    })


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, start_server: StartServer) -> Iterator[TritonServer]:
    repo = tmp_path_factory.mktemp("queue") / "model_repository"
    spec = held_spec()  # written by hand: `check` would refuse a batch delay above the timeout
    (repo / "held" / "1").mkdir(parents=True)
    (repo / "held" / "1" / "model.json").write_text(spec.dumps())
    (repo / "held" / "1" / "model.py").write_text(SHIM_SOURCE)
    (repo / "held" / "config.pbtxt").write_text(config_text(render_config(spec, embedding_dimension=384)))
    with start_server(repository=repo, models=["held"]) as running:
        yield running


def http_embed(url: str, model: str, rows: int = 1, timeout_us: int | None = None) -> np.ndarray:
    client = httpclient.InferenceServerClient(url, network_timeout=60)
    try:
        tensor = httpclient.InferInput("text", [rows, 1], "BYTES")
        tensor.set_data_from_numpy(np.array([[b"held in the queue"]] * rows, dtype=np.object_))
        return np.asarray(client.infer(model, [tensor], timeout=timeout_us).as_numpy("embedding"))
    finally:
        client.close()


def grpc_embed(url: str, model: str) -> None:
    client = grpcclient.InferenceServerClient(url)
    try:
        tensor = grpcclient.InferInput("text", [1, 1], "BYTES")
        tensor.set_data_from_numpy(np.array([[b"one more"]], dtype=np.object_))
        client.infer(model, [tensor], client_timeout=60)
    finally:
        client.close()


def refusal(call: Callable[[], Any]) -> tuple[InferenceServerException, float]:
    """The error ``call`` fails with, and how long it took."""
    start = time.monotonic()
    with pytest.raises(InferenceServerException) as raised:
        call()
    return raised.value, time.monotonic() - start


def in_background(
    pool: ThreadPoolExecutor, call: Callable[[], Any]
) -> Future[tuple[InferenceServerException, float]]:
    return pool.submit(refusal, call)


def wait_until_queued(server: TritonServer, model: str, count: int) -> None:
    """Poll Triton's pending-request gauge until ``count`` requests of ``model`` are queued."""
    pattern = re.compile(rf'^nv_inference_pending_request_count{{model="{model}",[^}}]*}} (\S+)$', re.M)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with urllib.request.urlopen(server.metrics_url, timeout=5) as response:
            found = pattern.search(response.read().decode())
        if found and float(found.group(1)) >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"{count} requests of {model} never showed as pending")


def test_a_full_queue_refuses_at_once_with_unavailable(server: TritonServer) -> None:
    with ThreadPoolExecutor(QUEUE_SIZE) as pool:
        queued = [in_background(pool, lambda: http_embed(server.http_url, "held")) for _ in range(QUEUE_SIZE)]
        wait_until_queued(server, "held", QUEUE_SIZE)
        # HTTP: 503, Triton's UNAVAILABLE.
        error, took = refusal(lambda: http_embed(server.http_url, "held"))
        assert (error.status(), QUEUE_FULL in error.message()) == ("503", True), error
        # gRPC: UNAVAILABLE.
        grpc_error, _ = refusal(lambda: grpc_embed(server.grpc_url, "held"))
        assert grpc_error.status() == "StatusCode.UNAVAILABLE" and QUEUE_FULL in grpc_error.message()
        # The project's client: an OverloadedError (retried elsewhere when there is an elsewhere).
        with Client(f"http://{server.http_url}", max_attempts=1, health_interval=0) as client, \
                pytest.raises(OverloadedError, match=QUEUE_FULL):
            client.embed(["one more"], model="held")
        print(f"\nqueue full: refused in {took * 1000:.0f} ms")
        # The queued ones are refused when their timeout passes, not run after the 10 s batch delay.
        for future in queued:
            error, waited = future.result(timeout=60)
            assert (error.status(), TIMED_OUT in error.message()) == ("503", True), error
            assert waited < 9.0, f"refused after {waited:.1f}s: the batch delay, not the queue timeout"


def test_the_queue_timeout_and_its_per_request_override(server: TritonServer) -> None:
    # One at a time: Triton applies a timeout when its batcher next looks at the queue, which an
    # idle batcher schedules for the earliest timeout of the request that opened the batch.
    url = server.http_url
    outcomes = {}
    for name, timeout_us in (("default", None), ("shorter", 300_000), ("longer", 20_000_000)):
        error, took = refusal(lambda: http_embed(url, "held", timeout_us=timeout_us))  # noqa: B023
        print(f"\n{name}: {error.status()} {error.message()!r} after {took:.2f}s")
        assert error.status() == "503" and TIMED_OUT in error.message(), (name, error)
        outcomes[name] = took
    # The model's 3 s applies by default, not the batcher's 10 s delay.
    assert TIMEOUT_S * 0.9 <= outcomes["default"] < 9.0
    # A request may shorten its own wait...
    assert outcomes["shorter"] < TIMEOUT_S * 0.67
    # ...but not lengthen it: refused at the model's timeout, never run after the 10 s delay.
    assert TIMEOUT_S * 0.9 <= outcomes["longer"] < 9.0


def test_a_full_batch_runs_at_once(server: TritonServer) -> None:
    # Eight rows fill the preferred batch: the policy never stands in the way of work it can do.
    assert http_embed(server.http_url, "held", rows=8).shape == (8, 384)


def test_the_rendered_policy_is_the_one_triton_runs(server: TritonServer) -> None:
    client = httpclient.InferenceServerClient(server.http_url)
    try:
        policy = client.get_model_config("held")["dynamic_batching"]["default_queue_policy"]
    finally:
        client.close()
    assert policy["max_queue_size"] == QUEUE_SIZE
    assert int(policy["default_timeout_microseconds"]) == derived_timeout_us(BUDGET_MS)
    assert policy["timeout_action"] == "REJECT" and policy["allow_timeout_override"] is True

