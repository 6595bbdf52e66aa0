"""The deployment, run: two `ds-triton serve` replicas, nginx in front, Prometheus watching.

In order (one set of servers for the module): requests over HTTP, SSE and gRPC
through nginx with TLS; Prometheus scrapes both replicas and every PromQL
expression the project ships returns data; then one replica's tritonserver is
SIGKILLed under steady load (last, since it leaves one replica).
"""

from __future__ import annotations

import http.client
import json
import math
import os
import queue
import signal
import ssl
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from ds_triton_client import Client
from tests.deploy.conftest import Replica
from tests.deploy.queries import adapter_queries, dashboard_queries, rule_queries
from tests.deploy.stack import Nginx, Prometheus, Tls, https_context

pytestmark = [pytest.mark.slow, pytest.mark.server]

EMBED = "/v2/models/text_embedding/infer"
FAIL_TIMEOUT_S = 10  # nginx.conf.template: max_fails=3 fail_timeout=10s
MIN_REQUESTS_AFTER_KILL = 300


def embed_body(text: str = "hello world") -> bytes:
    return json.dumps(
        {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1, 1], "data": [text]}]}
    ).encode()


class Https:
    """One keep-alive HTTPS connection to the balancer (not thread-safe: one per thread)."""

    def __init__(self, nginx: Nginx, tls: Tls, timeout: float = 30) -> None:
        self._connection = http.client.HTTPSConnection(
            "localhost", nginx.ports.https, context=https_context(tls), timeout=timeout
        )

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        try:
            self._connection.request(method, path, body, {"Content-Type": "application/json"})
            response = self._connection.getresponse()
            return response.status, response.read()
        except (OSError, http.client.HTTPException):
            self._connection.close()  # reconnects on the next request
            raise

    def close(self) -> None:
        self._connection.close()


def grpc_client(nginx: Nginx, tls: Tls) -> grpcclient.InferenceServerClient:
    return grpcclient.InferenceServerClient(
        f"localhost:{nginx.ports.grpcs}", ssl=True, root_certificates=str(tls.ca)
    )


def grpc_embed(client: grpcclient.InferenceServerClient, text: str = "hello world") -> np.ndarray:
    tensor = grpcclient.InferInput("text", [1, 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[text.encode()]], dtype=object))
    result = client.infer("text_embedding", [tensor], client_timeout=30)
    return np.asarray(result.as_numpy("embedding"))


def replica_counts(replicas: list[Replica], model: str) -> list[float]:
    """Each replica's nv_inference_count for ``model``, read from its own metrics port."""
    counts = []
    for replica in replicas:
        url = f"http://127.0.0.1:{replica.ports.metrics}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
        counts.append(sum(
            float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
            if line.startswith("nv_inference_count{") and f'model="{model}"' in line
        ))  # fmt: skip
    return counts


# -- requests through the balancer -------------------------------------------------


def test_http_requests_through_nginx_reach_both_replicas(
    nginx: Nginx, tls: Tls, replicas: list[Replica]
) -> None:
    before = replica_counts(replicas, "text_embedding")
    client = Https(nginx, tls)
    try:
        for i in range(40):
            status, body = client.request("POST", EMBED, embed_body(f"text number {i}"))
            assert status == 200, body
            (output,) = [o for o in json.loads(body)["outputs"] if o["name"] == "embedding"]
            assert output["shape"] == [1, 384]
    finally:
        client.close()
    served = [after - b for after, b in zip(replica_counts(replicas, "text_embedding"), before, strict=True)]
    assert sum(served) == 40 and all(n > 0 for n in served), served  # least_conn used both


def test_plain_http_to_the_tls_port_is_refused(nginx: Nginx) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", nginx.ports.https, timeout=10)
    connection.request("GET", "/v2/health/ready")
    assert connection.getresponse().status == 400  # nginx: "plain HTTP request sent to HTTPS port"


def test_wrong_certificate_authority_is_refused(nginx: Nginx) -> None:
    connection = http.client.HTTPSConnection(
        "localhost", nginx.ports.https, context=ssl.create_default_context(), timeout=10
    )
    with pytest.raises(ssl.SSLCertVerificationError):
        connection.request("GET", "/v2/health/ready")


def test_sse_stream_through_nginx_arrives_as_it_is_generated(nginx: Nginx, tls: Tls) -> None:
    connection = http.client.HTTPSConnection(
        "localhost", nginx.ports.https, context=https_context(tls), timeout=60
    )
    parameters = {"stream": True, "temperature": 0, "max_tokens": 200, "ignore_eos": True}
    body = {"text_input": "Once upon a time", "parameters": parameters}
    start = time.monotonic()
    connection.request("POST", "/v2/models/text_generation/generate_stream", json.dumps(body).encode())
    response = connection.getresponse()
    assert response.status == 200
    assert response.getheader("Content-Type", "").startswith("text/event-stream")
    arrivals, pieces = [], []
    while line := response.readline():
        if line.startswith(b"data:"):
            arrivals.append(time.monotonic() - start)
            pieces.append(json.loads(line[5:])["text_output"])
    connection.close()
    assert len(pieces) >= 2 and "".join(pieces)
    # Unbuffered: the first event leaves with the first token, long before the
    # last one (a buffering proxy would hand most of them over at the end).
    assert arrivals[0] < 0.5 * arrivals[-1], (arrivals[0], arrivals[-1])


def test_grpc_through_nginx_with_tls(nginx: Nginx, tls: Tls) -> None:
    client = grpc_client(nginx, tls)
    try:
        assert client.is_server_ready()
        assert grpc_embed(client).shape == (1, 384)
        assert client.get_model_metadata("text_embedding").name == "text_embedding"
    finally:
        client.close()


def test_grpc_streaming_generation_through_nginx(nginx: Nginx, tls: Tls) -> None:
    events: queue.Queue[tuple[Any, Any]] = queue.Queue()
    client = grpc_client(nginx, tls)
    client.start_stream(callback=lambda result, error: events.put((result, error)))
    try:
        text = grpcclient.InferInput("text_input", [1], "BYTES")
        text.set_data_from_numpy(np.array([b"Hello"], dtype=object))
        stream = grpcclient.InferInput("stream", [1], "BOOL")
        stream.set_data_from_numpy(np.array([True]))
        params = grpcclient.InferInput("sampling_parameters", [1], "BYTES")
        sampling = json.dumps({"max_tokens": 16, "temperature": 0}).encode()
        params.set_data_from_numpy(np.array([sampling], dtype=object))
        client.async_stream_infer("text_generation", [text, stream, params], enable_empty_final_response=True)
        pieces: list[str] = []
        while True:
            result, error = events.get(timeout=60)
            assert error is None, error
            response = result.get_response()
            if response.outputs:
                pieces.extend(t.decode() for t in result.as_numpy("text_output").reshape(-1))
            if response.parameters["triton_final_response"].bool_param:
                break
        assert len(pieces) >= 2
    finally:
        client.stop_stream()
        client.close()


@pytest.mark.parametrize("scheme", ["https", "grpcs"])
def test_the_project_client_through_nginx(nginx: Nginx, tls: Tls, scheme: str) -> None:
    port = nginx.ports.https if scheme == "https" else nginx.ports.grpcs
    with Client(f"{scheme}://localhost:{port}", ca_file=str(tls.ca)) as client:
        assert client.embed(["first text", "second text"]).shape == (2, 384)
        assert "".join(client.stream("Hello", max_tokens=8, temperature=0.0))


def test_plaintext_grpc_to_the_tls_port_is_refused(nginx: Nginx) -> None:
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{nginx.ports.grpcs}")
    try:
        with pytest.raises(InferenceServerException):
            client.is_server_live(client_timeout=5)
    finally:
        client.close()


def test_replica_only_apis_are_refused_at_the_balancer(nginx: Nginx, tls: Tls) -> None:
    client = Https(nginx, tls)
    try:
        replica_only = [
            ("POST", "/v2/repository/index"),
            ("GET", "/v2/systemsharedmemory/status"),
            ("POST", "/v2/repository/models/text_embedding/unload"),
            ("GET", "/v2/logging"),
        ]
        for method, path in replica_only:
            status, body = client.request(method, path, b"{}" if method == "POST" else None)
            assert status == 403 and b"call a replica directly" in body, (path, status, body)
        # Triton itself has no request-size limit: nginx's client_max_body_size (16m) is the one.
        status, _ = client.request("POST", EMBED, embed_body("x" * (17 * 1024 * 1024)))
        assert status == 413
    finally:
        client.close()
    grpc_api = grpc_client(nginx, tls)
    try:
        with pytest.raises(InferenceServerException) as refused:
            grpc_api.get_model_repository_index()
        assert refused.value.status() == str(grpc.StatusCode.PERMISSION_DENIED)
    finally:
        grpc_api.close()


# -- monitoring --------------------------------------------------------------------


@dataclass
class Load:
    """Closed-loop traffic through the balancer from a few threads, each request recorded."""

    nginx: Nginx
    tls: Tls
    outcomes: list[tuple[float, bool, str]] = field(default_factory=list)  # (time, ok, detail)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self, http_threads: int = 2, grpc_threads: int = 2, generate: bool = False) -> Load:
        workers: list[Callable[[], None]] = [self._http] * http_threads + [self._grpc] * grpc_threads
        if generate:
            workers.append(self._generate)
        for worker in workers:
            thread = threading.Thread(target=worker, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def _record(self, ok: bool, detail: str = "") -> None:
        self.outcomes.append((time.time(), ok, detail))

    def _http(self) -> None:
        client = Https(self.nginx, self.tls)
        while not self._stop.is_set():
            try:
                status, body = client.request("POST", EMBED, embed_body())
                self._record(status == 200, "" if status == 200 else f"HTTP {status} {body[:200]!r}")
            except (OSError, http.client.HTTPException) as exc:
                self._record(False, f"HTTP {exc!r}")
        client.close()

    def _grpc(self) -> None:
        client = grpc_client(self.nginx, self.tls)
        while not self._stop.is_set():
            try:
                grpc_embed(client)
                self._record(True)
            except InferenceServerException as exc:
                self._record(False, f"gRPC {exc}")
        client.close()

    def _generate(self) -> None:
        client = Https(self.nginx, self.tls)
        body = json.dumps({"text_input": "Hello", "parameters": {"max_tokens": 8}}).encode()
        while not self._stop.is_set():
            try:
                status, _ = client.request("POST", "/v2/models/text_generation/generate", body)
                self._record(status == 200, f"generate HTTP {status}")
            except (OSError, http.client.HTTPException) as exc:
                self._record(False, f"generate {exc!r}")
        client.close()


def has_finite_value(result: list[dict[str, Any]]) -> bool:
    return any(math.isfinite(float(sample["value"][1])) for sample in result)


def test_prometheus_scrapes_both_replicas(prometheus: Prometheus, replicas: list[Replica]) -> None:
    deadline = time.monotonic() + 60
    while True:
        up = {(r["metric"]["job"], r["metric"]["instance"]): r["value"][1] for r in prometheus.query("up")}
        if len(up) == 2 * len(replicas) and set(up.values()) == {"1"}:
            break
        assert time.monotonic() < deadline, f"targets not all up: {up}"
        time.sleep(1)
    for replica in replicas:
        assert up[("triton", f"127.0.0.1:{replica.ports.metrics}")] == "1"
        assert up[("ds-triton-supervisor", f"127.0.0.1:{replica.ports.supervisor}")] == "1"


def test_every_dashboard_alert_and_autoscaling_query_returns_data(
    prometheus: Prometheus, nginx: Nginx, tls: Tls, replicas: list[Replica]
) -> None:
    load = Load(nginx, tls).start(http_threads=1, grpc_threads=1, generate=True)
    try:
        time.sleep(10)  # several scrapes of traffic on both models, both replicas
    finally:
        load.stop()
    at = time.time()
    time.sleep(2)  # the last scrape before `at` is in
    gpu_metrics_exposed = bool(prometheus.query('{__name__=~"nv_gpu_.+"}'))
    missing = []
    for query in [*dashboard_queries(), *rule_queries(), *adapter_queries()]:
        result = prometheus.query(query.expr, at=at)
        if has_finite_value(result):
            continue
        if not gpu_metrics_exposed and all(name.startswith("nv_gpu_") for name in query.metrics):
            continue  # GPU panels: empty where Triton sees no GPU, as on this machine
        missing.append(f"{query.source}: {query.expr} -> {result}")
    assert not missing, "queries without data:\n" + "\n".join(missing)


def test_every_rule_loads_and_evaluates(prometheus: Prometheus) -> None:
    groups = prometheus.get("/api/v1/rules")["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert len(rules) == len(rule_queries())
    assert all(rule["health"] == "ok" for rule in rules), [(r["name"], r.get("lastError")) for r in rules]


# -- failover (last: they change the replicas) -------------------------------------------


def test_a_model_not_loaded_on_one_replica_is_served_by_the_other(
    nginx: Nginx, tls: Tls, replicas: list[Replica]
) -> None:
    # What the supervisor does when a model's stub dies: unload it on that replica.
    unload = urllib.request.Request(
        f"http://127.0.0.1:{replicas[0].ports.http}/v2/repository/models/text_generation/unload",
        data=b"{}", method="POST",
    )  # fmt: skip
    with urllib.request.urlopen(unload, timeout=60) as response:
        assert response.status == 200
    client = Https(nginx, tls)
    try:
        body = json.dumps({"text_input": "Hello", "parameters": {"max_tokens": 4}}).encode()
        statuses = [client.request("POST", "/v2/models/text_generation/generate", body)[0] for _ in range(20)]
    finally:
        client.close()
    assert statuses == [200] * 20  # each 404 of replica 0 was retried on replica 1



def test_sigkill_of_one_replica_under_load_fails_at_most_one_percent(
    nginx: Nginx, tls: Tls, replicas: list[Replica], prometheus: Prometheus
) -> None:
    victim = replicas[0]
    load = Load(nginx, tls).start(http_threads=2, grpc_threads=2)
    try:
        time.sleep(5)
        assert victim.group is not None
        victim.group.record()  # the stubs as they are now, for cleanup
        killed_at = time.time()
        os.kill(victim.tritonserver_pid, signal.SIGKILL)
        # Past fail_timeout, and enough requests for a 1% share to mean something
        # (this shared machine may be slow).
        while time.time() < killed_at + 60 and (
            time.time() < killed_at + FAIL_TIMEOUT_S + 10
            or sum(o[0] >= killed_at for o in load.outcomes) < MIN_REQUESTS_AFTER_KILL
        ):
            time.sleep(1)
    finally:
        load.stop()
    outcomes = load.outcomes
    after_kill = [o for o in outcomes if o[0] >= killed_at]
    failed = [o for o in after_kill if not o[1]]
    late = [o for o in failed if o[0] > killed_at + FAIL_TIMEOUT_S]
    share = len(failed) / len(after_kill)
    seconds = outcomes[-1][0] - killed_at
    print(f"\nSIGKILL of one replica's tritonserver behind nginx: {len(failed)} of {len(after_kill)} "
          f"requests failed ({share:.2%}) in the {seconds:.0f} s after the kill; "
          f"{len(outcomes)} requests in all; failures: {[detail for _, _, detail in failed]}")  # fmt: skip
    assert len(after_kill) >= MIN_REQUESTS_AFTER_KILL, "too little load to measure a 1% share"
    # HTTP requests caught on the dead replica are resent to the other one; gRPC
    # calls in flight there are not (nginx streams gRPC request bodies, so it
    # cannot resend them) and end UNAVAILABLE, which clients retry.
    assert share <= 0.01, failed[:10]
    assert not late, late[:10]
    # Prometheus sees the replica go: its alert is pending (it fires after 1 min).
    deadline = time.monotonic() + 30
    victim_instance = f"127.0.0.1:{victim.ports.metrics}"
    while not any(
        a["labels"]["alertname"] == "TritonReplicaDown" and a["labels"]["instance"] == victim_instance
        for a in prometheus.get("/api/v1/alerts")["alerts"]
    ):
        assert time.monotonic() < deadline, "TritonReplicaDown never became pending"
        time.sleep(1)
