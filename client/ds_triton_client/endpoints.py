"""Endpoint addresses: ``http://host:port``, ``grpc://host:port`` or bare ``host:port``."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from ds_triton_client.options import Protocol

_DEFAULT_PORTS: dict[str, int] = {"http": 8000, "grpc": 8001}


@dataclass(frozen=True)
class Endpoint:
    """One Triton server as the client addresses it."""

    protocol: Protocol
    host: str
    port: int

    @property
    def address(self) -> str:
        """``host:port`` as tritonclient expects it."""
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.protocol}://{self.address}"

    def __str__(self) -> str:
        return self.url


def parse_endpoint(text: str, default_protocol: Protocol = "http") -> Endpoint:
    """Parse one endpoint; the scheme chooses the protocol, else ``default_protocol``.

    Raises:
        ValueError: The scheme is not http/grpc or the address has no host.
    """
    raw = text.strip()
    if "://" not in raw:
        raw = f"{default_protocol}://{raw}"
    parts = urlsplit(raw)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise ValueError(f"endpoint {text!r}: scheme must be http:// or grpc://")
    if not parts.hostname:
        raise ValueError(f"endpoint {text!r}: missing host")
    if parts.path not in ("", "/"):
        raise ValueError(f"endpoint {text!r}: a Triton endpoint has no path")
    protocol: Protocol = "grpc" if scheme == "grpc" else "http"
    return Endpoint(protocol, parts.hostname, parts.port or _DEFAULT_PORTS[scheme])


def parse_endpoints(
    urls: str | list[str] | tuple[str, ...], default_protocol: Protocol = "http"
) -> list[Endpoint]:
    """Parse one URL, a comma-separated list or a sequence; duplicates are an error."""
    items = [u for u in urls.split(",") if u.strip()] if isinstance(urls, str) else list(urls)
    if not items:
        raise ValueError("at least one endpoint URL is required")
    endpoints = [parse_endpoint(u, default_protocol) for u in items]
    if len(set(endpoints)) != len(endpoints):
        raise ValueError(f"duplicate endpoint in {items}")
    return endpoints
