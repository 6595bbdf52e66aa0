"""Client settings in one typed, validated place (defaults documented in the README)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

Protocol = Literal["http", "grpc"]

#: Triton reads a restricted gRPC protocol's key from this metadata prefix plus the key name.
GRPC_RESTRICTED_PREFIX = "triton-grpc-protocol-"


@dataclass(frozen=True)
class ClientOptions:
    """How the client talks to its endpoints, retries and fails over.

    Attributes:
        protocol: Used for URLs without a scheme (``host:port``).
        timeout: Default per-call deadline in seconds, covering every retry of that call.
        max_attempts: Attempts per call across endpoints (1 = no retry).
        backoff_base: First retry delay in seconds; doubles per attempt.
        backoff_max: Upper bound of one retry delay in seconds.
        max_fails: Consecutive failures after which an endpoint is ejected (nginx ``max_fails``).
        fail_timeout: Seconds an ejected endpoint stays out before it is tried again
            (nginx ``fail_timeout``).
        health_interval: Seconds between active health checks; 0 disables them.
        health_timeout: Deadline of one health probe in seconds.
        stranded_after: Seconds a call may stay silent, once a health check saw its model
            gone from its endpoint, before the client ends it and fails it over. It ends
            the streams of a generation stub that died, which Triton 2.51 never finishes;
            calls that keep receiving (a model draining its streams) are never ended.
        max_concurrency: Requests in flight per client (bounds threads, tasks and chunks).
        pool_size: Most connections per endpoint, opened as needed. HTTP: one request at a
            time each. gRPC: channels that multiplex calls and streams; another opens
            only when every open one carries 100 calls.
        ca_file: PEM bundle that verifies the servers of ``https://``/``grpcs://`` endpoints
            (default: the system's trust store).
        cert_file: PEM client certificate for mutual TLS (with ``key_file``).
        key_file: PEM private key of ``cert_file``.
        headers: Sent with every request, as they are (HTTP headers, gRPC metadata).
        admin_key: The key of a server whose admin APIs are restricted (``ds-triton serve
            --admin-key-file``): sent as the ``admin_header`` HTTP header, and as gRPC
            metadata ``triton-grpc-protocol-<admin_header>``, which is what Triton expects.
        admin_header: The header name the server was started with.
    """

    protocol: Protocol = "http"
    timeout: float = 30.0
    max_attempts: int = 4
    backoff_base: float = 0.05
    backoff_max: float = 1.0
    max_fails: int = 3
    fail_timeout: float = 10.0
    health_interval: float = 2.0
    health_timeout: float = 1.0
    stranded_after: float = 5.0
    max_concurrency: int = 8
    pool_size: int = 8
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    admin_key: str | None = None
    admin_header: str = "admin-key"

    def __post_init__(self) -> None:
        checks = {
            "timeout": self.timeout > 0,
            "max_attempts": self.max_attempts >= 1,
            "backoff_base": self.backoff_base >= 0,
            "backoff_max": self.backoff_max >= self.backoff_base,
            "max_fails": self.max_fails >= 1,
            "fail_timeout": self.fail_timeout >= 0,
            "health_interval": self.health_interval >= 0,
            "health_timeout": self.health_timeout > 0,
            "stranded_after": self.stranded_after > 0,
            "max_concurrency": self.max_concurrency >= 1,
            "pool_size": self.pool_size >= 1,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"invalid ClientOptions field(s): {', '.join(bad)}")
        if self.protocol not in ("http", "grpc"):
            raise ValueError(f"invalid ClientOptions field(s): protocol={self.protocol!r}")
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("ClientOptions: cert_file and key_file go together (mutual TLS)")
        extra = {**self.headers, self.admin_header: self.admin_key or ""}
        for name, value in extra.items():
            if not name or name != name.strip() or any(c in name + value for c in "\r\n"):
                raise ValueError(f"ClientOptions: invalid header {name!r}")

    def http_headers(self) -> dict[str, str]:
        """Headers every HTTP request carries."""
        admin = {self.admin_header: self.admin_key} if self.admin_key else {}
        return {**self.headers, **admin}

    def grpc_metadata(self) -> tuple[tuple[str, str], ...]:
        """Metadata every gRPC call carries (keys lower case, as gRPC requires)."""
        pairs = {name.lower(): value for name, value in self.headers.items()}
        if self.admin_key:
            pairs[f"{GRPC_RESTRICTED_PREFIX}{self.admin_header.lower()}"] = self.admin_key
        return tuple(pairs.items())
    @property
    def tls_files(self) -> tuple[str | None, str | None, str | None]:
        """``(ca_file, cert_file, key_file)``."""
        return self.ca_file, self.cert_file, self.key_file
