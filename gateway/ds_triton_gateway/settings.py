"""The gateway's settings in one typed place, read from flags or ``DS_TRITON_GATEWAY_*`` variables."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ds_triton_gateway.auth import ApiKeys, load_api_keys

ENV_PREFIX = "DS_TRITON_GATEWAY_"
ADMIN_KEY_ENV = "DS_TRITON_ADMIN_KEY"
ADMIN_KEY_FILE_ENV = "DS_TRITON_ADMIN_KEY_FILE"
DEFAULT_PORT = 8080


@dataclass(frozen=True)
class GatewaySettings:
    """What the gateway serves and how (defaults documented in the README).

    Attributes:
        urls: Triton replicas (``grpc://h:p``, ``grpcs://h:p``; comma-separated or a list):
            ``ds_triton_client`` balances and fails over across them.
        model_repository: The repository the replicas serve: model names, tasks and the
            checkpoints' tokenizers (chat templates, embedding token counts) come from it.
        host: Address the gateway listens on.
        port: Its port.
        api_keys: Keys accepted in ``Authorization: Bearer``; empty: no authentication.
        max_request_bytes: Largest request body accepted (413 above it).
        request_timeout: Seconds one request may take end to end, retries and the whole
            stream included (504 past it).
        max_in_flight: Requests the gateway carries at once (429 above it).
        max_embedding_inputs: Most texts in one embeddings request.
        client_options: ``ds_triton_client.ClientOptions`` fields (TLS files, admin key, ...).
        access_log: Log one line per request.
    """

    urls: str = "grpc://127.0.0.1:8001"
    model_repository: Path = Path("model_repository")
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    api_keys: ApiKeys = field(default_factory=ApiKeys)
    max_request_bytes: int = 16 * 1024 * 1024
    request_timeout: float = 300.0
    max_in_flight: int = 512
    max_embedding_inputs: int = 2048
    client_options: dict[str, Any] = field(default_factory=dict)
    access_log: bool = False

    def __post_init__(self) -> None:
        bad = [
            name
            for name, ok in {
                "max_request_bytes": self.max_request_bytes >= 1024,
                "request_timeout": self.request_timeout > 0,
                "max_in_flight": self.max_in_flight >= 1,
                "max_embedding_inputs": self.max_embedding_inputs >= 1,
                "port": 0 <= self.port < 65536,
            }.items()
            if not ok
        ]
        if bad:
            raise ValueError(f"invalid gateway setting(s): {', '.join(bad)}")


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(ENV_PREFIX + name, default)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = GatewaySettings()
    parser.add_argument(
        "--url",
        default=_env("URLS", defaults.urls),
        help="Triton gRPC endpoint(s), comma-separated (grpc://host:port, grpcs://host:port)",
    )
    parser.add_argument(
        "--model-repository",
        type=Path,
        default=Path(_env("MODEL_REPOSITORY", str(defaults.model_repository)) or "."),
    )
    parser.add_argument("--host", default=_env("HOST", defaults.host))
    parser.add_argument("--port", type=int, default=int(_env("PORT", str(defaults.port)) or 0))
    parser.add_argument(
        "--api-key-file",
        type=Path,
        default=_env("API_KEY_FILE"),
        help=f"file of accepted API keys, one per line (or {ENV_PREFIX}API_KEYS, "
        "comma-separated); without either, no key is asked for",
    )
    parser.add_argument(
        "--max-request-bytes",
        type=int,
        default=int(_env("MAX_REQUEST_BYTES", str(defaults.max_request_bytes)) or 0),
    )
    parser.add_argument(
        "--request-timeout",
        type=float,
        default=float(_env("REQUEST_TIMEOUT", str(defaults.request_timeout)) or 0),
    )
    parser.add_argument(
        "--max-in-flight", type=int, default=int(_env("MAX_IN_FLIGHT", str(defaults.max_in_flight)) or 0)
    )
    tls = parser.add_argument_group("connection to Triton")
    tls.add_argument("--ca-cert", default=_env("CA_CERT"), help="CA that verifies grpcs:// replicas")
    tls.add_argument("--client-cert", default=_env("CLIENT_CERT"), help="client certificate (mutual TLS)")
    tls.add_argument("--client-key", default=_env("CLIENT_KEY"), help="key of --client-cert")
    tls.add_argument(
        "--admin-key-file",
        type=Path,
        default=os.environ.get(ADMIN_KEY_FILE_ENV) or None,
        help=f"the replicas' admin key (or {ADMIN_KEY_ENV}): lets the gateway read model "
        "configs (batch sizes) where the config API is restricted",
    )
    parser.add_argument("--access-log", action="store_true", default=_env("ACCESS_LOG") == "1")


def from_arguments(args: argparse.Namespace) -> GatewaySettings:
    """Settings from parsed flags.

    Raises:
        ValueError: A key file cannot be read, or a value is out of range (the message says which).
    """
    admin_key = os.environ.get(ADMIN_KEY_ENV) or None
    if args.admin_key_file is not None:
        try:
            admin_key = Path(args.admin_key_file).read_text().strip()
        except OSError as exc:
            raise ValueError(f"--admin-key-file {args.admin_key_file}: {exc.strerror or exc}") from None
    client_options = {
        "ca_file": args.ca_cert,
        "cert_file": args.client_cert,
        "key_file": args.client_key,
        "admin_key": admin_key,
    }
    return GatewaySettings(
        urls=args.url,
        model_repository=args.model_repository,
        host=args.host,
        port=args.port,
        api_keys=load_api_keys(args.api_key_file, _env("API_KEYS")),
        max_request_bytes=args.max_request_bytes,
        request_timeout=args.request_timeout,
        max_in_flight=args.max_in_flight,
        client_options={k: v for k, v in client_options.items() if v},
        access_log=args.access_log,
    )
