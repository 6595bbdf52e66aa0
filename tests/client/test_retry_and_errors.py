"""Retry decisions, backoff with jitter, deadlines, error mapping and endpoint parsing."""

from __future__ import annotations

import random
from typing import Any, cast

import pytest
from tritonclient.utils import InferenceServerException

from ds_triton_client.balancer import Balancer
from ds_triton_client.endpoints import parse_endpoint, parse_endpoints
from ds_triton_client.errors import (
    ClientError,
    DeadlineExceededError,
    InvalidInputError,
    ModelNotReadyError,
    OverloadedError,
    PermissionDeniedError,
    ServerConnectionError,
    ServerError,
    StreamInterruptedError,
    error_from_status,
    map_error,
)
from ds_triton_client.failover import Failover
from ds_triton_client.options import ClientOptions
from ds_triton_client.retry import Deadline, RetryPolicy


def test_backoff_grows_exponentially_with_jitter_and_is_capped() -> None:
    policy = RetryPolicy(max_attempts=10, base=0.1, cap=1.0, rng=random.Random(7))
    for attempt, step in [(1, 0.1), (2, 0.2), (3, 0.4), (4, 0.8), (5, 1.0), (9, 1.0)]:
        delays = [policy.delay(attempt) for _ in range(50)]
        assert all(step / 2 <= d <= step for d in delays)
        assert len(set(delays)) > 1  # jittered


@pytest.mark.parametrize(
    ("error", "retry"),
    [
        (ServerConnectionError("refused"), True),
        (OverloadedError("queue full"), True),
        (ModelNotReadyError("unknown model"), True),
        (InvalidInputError("bad text"), False),
        (DeadlineExceededError("late"), False),
        (ServerError("boom"), False),
    ],
)
def test_only_safe_errors_are_retried(error: ClientError, retry: bool) -> None:
    policy = RetryPolicy(max_attempts=3)
    assert policy.should_retry(error, attempt=1) is retry


def test_never_retry_after_a_stream_started_or_attempts_ran_out() -> None:
    policy = RetryPolicy(max_attempts=3, base=0.0)
    assert not policy.should_retry(ServerConnectionError("x"), attempt=3)
    endpoints = parse_endpoints("http://a:1,http://b:2")
    balancer = Balancer(endpoints)
    failover = Failover(balancer, policy, Deadline(10))
    first = failover.next_endpoint()
    assert failover.failed(first, ServerConnectionError("reset")) == 0.0  # retried elsewhere
    second = failover.next_endpoint()
    assert second.endpoint != first.endpoint
    with pytest.raises(StreamInterruptedError, match="reset"):
        failover.failed(second, ServerConnectionError("reset"), started=True)
    assert [s["outstanding"] for s in balancer.snapshot()] == [0, 0]


def test_deadline_counts_down() -> None:
    now = [0.0]
    deadline = Deadline(2.0, clock=lambda: now[0])
    assert deadline.remaining() == 2.0
    now[0] = 1.5
    assert deadline.remaining() == pytest.approx(0.5)
    now[0] = 3.0
    assert deadline.expired() and deadline.remaining() == 0.0


@pytest.mark.parametrize(
    ("status", "message", "kind"),
    [
        ("400", "input 'text' is missing", InvalidInputError),
        ("400", "Request for unknown model: 'nope' is not found", ModelNotReadyError),
        ("503", "Exceeds maximum queue size", OverloadedError),
        ("500", "forward failed", ServerError),
        ("StatusCode.INVALID_ARGUMENT", "texts[0] is empty", InvalidInputError),
        (
            "StatusCode.UNAVAILABLE",
            "failed to connect to all addresses; Connection refused",
            ServerConnectionError,
        ),
        ("StatusCode.UNAVAILABLE", "max concurrent sequences reached", OverloadedError),
        ("StatusCode.DEADLINE_EXCEEDED", "Deadline Exceeded", DeadlineExceededError),
        (None, "in-stream failure", ServerError),
        # gRPC stream errors have no status: the wording decides.
        (None, "sampling_parameters.temperature must be a finite number >= 0", InvalidInputError),
        (None, "too many concurrent requests: 16 sequences run; retry later", OverloadedError),
        # Triton's HTTP generate endpoints turn every model error into 400: the documented
        # capacity messages still mean "busy, send it elsewhere".
        ("400", "too many concurrent requests: 1 sequences run and 0 may wait; retry later", OverloadedError),
        ("400", "the model is shutting down; retry on another instance", OverloadedError),
        ("StatusCode.UNAVAILABLE", "the model was unloaded before the request finished", OverloadedError),
        # A restricted API: HTTP says 403, gRPC says UNAVAILABLE; neither is a capacity problem.
        ("403", "This API is restricted, expecting header 'admin-key'", PermissionDeniedError),
        (
            "StatusCode.UNAVAILABLE",
            "This protocol is restricted, expecting header 'triton-grpc-protocol-admin-key'",
            PermissionDeniedError,
        ),
    ],
)
def test_status_and_message_map_to_typed_errors(
    status: str | None, message: str, kind: type[ClientError]
) -> None:
    error = error_from_status(status, message, "http://h:1")
    assert type(error) is kind
    assert error.message == message  # the server's message is kept verbatim
    assert "http://h:1" in str(error)


def test_map_error_handles_tritonclient_and_os_errors() -> None:
    mapped = map_error(InferenceServerException("bad", status="StatusCode.INVALID_ARGUMENT"), "grpc://h:1")
    assert isinstance(mapped, InvalidInputError) and mapped.endpoint == "grpc://h:1"
    assert isinstance(map_error(ConnectionRefusedError("refused")), ServerConnectionError)
    assert isinstance(map_error(TimeoutError()), DeadlineExceededError)
    assert isinstance(map_error(ServerConnectionError("x")), ConnectionError)  # also a builtin
    assert isinstance(map_error(DeadlineExceededError("x")), TimeoutError)


def test_endpoint_scheme_chooses_protocol() -> None:
    assert parse_endpoint("grpc://10.0.0.1:9001").protocol == "grpc"
    assert parse_endpoint("http://h").port == 8000
    assert parse_endpoint("h:1234", "grpc").url == "grpc://h:1234"
    assert [e.port for e in parse_endpoints("http://a:1, http://b:2")] == [1, 2]
    for bad in ("ftp://h:1", "http://h:1/v2", "http://:1"):
        with pytest.raises(ValueError):
            parse_endpoint(bad)
    with pytest.raises(ValueError, match="duplicate"):
        parse_endpoints(["http://a:1", "a:1"])


def test_tls_schemes() -> None:
    https, grpcs = parse_endpoint("https://lb.example"), parse_endpoint("GRPCS://h:8443")
    assert (https.protocol, https.tls, https.port, https.url) == ("http", True, 443, "https://lb.example:443")
    assert (grpcs.protocol, grpcs.tls, grpcs.url) == ("grpc", True, "grpcs://h:8443")
    assert not parse_endpoint("grpc://h:1").tls


def test_tls_files_need_a_tls_endpoint_and_go_together() -> None:
    from ds_triton_client import Client

    with pytest.raises(ValueError, match="no endpoint is https"):
        Client("http://127.0.0.1:1", ca_file="/ca.pem", health_interval=0)
    with pytest.raises(ValueError, match="cert_file and key_file"):
        ClientOptions(cert_file="/c.pem")
    with pytest.raises(ValueError, match="TLS files"):
        Client("https://127.0.0.1:1", ca_file="/no/such/ca.pem", health_interval=0)
    with pytest.raises(ValueError, match="header"):
        ClientOptions(headers={"x-key": "a\r\nb"})


def test_options_validate_and_name_the_field() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        ClientOptions(max_attempts=0)
    with pytest.raises(ValueError, match="protocol"):
        ClientOptions(protocol=cast(Any, "ftp"))


def test_refused_urllib3_connection_is_a_connection_error_not_a_timeout() -> None:
    import urllib3.exceptions as u3

    refused = u3.NewConnectionError(None, "Failed to establish a new connection: [Errno 111] refused")  # type: ignore[arg-type]
    assert isinstance(map_error(refused), ServerConnectionError)
    assert isinstance(map_error(u3.ReadTimeoutError(None, "/", "read timed out")), DeadlineExceededError)  # type: ignore[arg-type]


def test_the_admin_key_goes_where_triton_looks_for_it() -> None:
    options = ClientOptions(headers={"X-Trace": "1"}, admin_key="k3y")
    assert options.http_headers() == {"X-Trace": "1", "admin-key": "k3y"}
    assert dict(options.grpc_metadata()) == {"x-trace": "1", "triton-grpc-protocol-admin-key": "k3y"}
    assert ClientOptions().http_headers() == {} and ClientOptions().grpc_metadata() == ()
