"""Endpoint addresses: ``http(s)://host:port``, ``grpc(s)://host:port`` or bare ``host:port``."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from ds_triton_client.options import Protocol

#: scheme -> (protocol, TLS, default port). TLS endpoints default to 443: Triton's HTTP
#: has no TLS, so ``https`` is a balancer in front of it (gRPC TLS may be Triton's own).
_SCHEMES: dict[str, tuple[Protocol, bool, int]] = {
    "http": ("http", False, 8000),
    "grpc": ("grpc", False, 8001),
    "https": ("http", True, 443),
    "grpcs": ("grpc", True, 443),
}


@dataclass(frozen=True)
class Endpoint:
    """One Triton server (or a balancer in front of some) as the client addresses it."""

    protocol: Protocol
    host: str
    port: int
    tls: bool = False

    @property
    def address(self) -> str:
        """``host:port`` as tritonclient expects it."""
        return f"{self.host}:{self.port}"

    @property
    def scheme(self) -> str:
        return f"{self.protocol}s" if self.tls else self.protocol

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.address}"

    def __str__(self) -> str:
        return self.url


def parse_endpoint(text: str, default_protocol: Protocol = "http") -> Endpoint:
    """Parse one endpoint; the scheme chooses the protocol, else ``default_protocol``.

    Raises:
        ValueError: The scheme is not http(s)/grpc(s) or the address has no host.
    """
    raw = text.strip()
    if "://" not in raw:
        raw = f"{default_protocol}://{raw}"
    parts = urlsplit(raw)
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES:
        raise ValueError(f"endpoint {text!r}: scheme must be http://, https://, grpc:// or grpcs://")
    if not parts.hostname:
        raise ValueError(f"endpoint {text!r}: missing host")
    if parts.path not in ("", "/"):
        raise ValueError(f"endpoint {text!r}: a Triton endpoint has no path")
    protocol, tls, default_port = _SCHEMES[scheme]
    return Endpoint(protocol, parts.hostname, parts.port or default_port, tls)


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
