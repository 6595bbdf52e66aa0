"""``ds-triton serve``'s security options: the admin key and gRPC TLS.

The admin key turns on Triton's ``--http-restricted-api`` and
``--grpc-restricted-protocol`` for the APIs that change or reveal the server
(``tritonserver.RESTRICTED_APIS``); inference, health, metadata and statistics
stay open. It comes from a file or an environment variable, never from the
command line of ``ds-triton serve`` (Triton itself only takes it as an argument;
see the README's Security section for what that means on a shared machine).
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
from pathlib import Path
from typing import Any

from ds_triton.server_process.tritonserver import GrpcTls

ADMIN_KEY_ENV = "DS_TRITON_ADMIN_KEY"
ADMIN_KEY_FILE_ENV = "DS_TRITON_ADMIN_KEY_FILE"
MIN_KEY_LENGTH = 16


class SecurityError(ValueError):
    """A security option is unusable; the message says which and why."""


def add_security_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("security")
    group.add_argument(
        "--admin-key-file",
        type=Path,
        default=os.environ.get(ADMIN_KEY_FILE_ENV) or None,
        help=f"file holding the admin key (or set {ADMIN_KEY_ENV}); restricts the repository, "
        "config, shared-memory, logging and trace APIs to requests carrying it",
    )
    group.add_argument("--grpc-tls-cert", type=Path, help="PEM certificate gRPC serves (turns on TLS)")
    group.add_argument("--grpc-tls-key", type=Path, help="PEM private key of --grpc-tls-cert")
    group.add_argument(
        "--grpc-tls-client-ca", type=Path, help="PEM CA that client certificates must chain to (mutual TLS)"
    )


def security_options(args: argparse.Namespace) -> dict[str, Any]:
    """``ServerOptions`` keyword arguments (``admin_key``, ``grpc_tls``) from parsed arguments.

    Raises:
        SecurityError: a key or certificate file is missing, empty or malformed.
    """
    return {"admin_key": read_admin_key(args.admin_key_file), "grpc_tls": grpc_tls(args)}


def read_admin_key(path: Path | None, env: dict[str, str] | None = None) -> str | None:
    env = dict(os.environ) if env is None else env
    if path is not None:
        try:
            mode = path.stat().st_mode
            key = path.read_text().strip()
        except OSError as exc:
            raise SecurityError(f"--admin-key-file {path}: {exc.strerror or exc}") from None
        if mode & (stat.S_IRGRP | stat.S_IROTH):
            print(f"ds-triton serve: warning: {path} is readable by other users; chmod 600 it",
                  file=sys.stderr)
        source = str(path)
    elif env.get(ADMIN_KEY_ENV):
        key, source = env[ADMIN_KEY_ENV].strip(), ADMIN_KEY_ENV
    else:
        return None
    if not key:
        raise SecurityError(f"the admin key in {source} is empty")
    if any(ch.isspace() or not ch.isprintable() for ch in key):
        raise SecurityError(f"the admin key in {source} must be one line of printable characters, no spaces")
    if len(key) < MIN_KEY_LENGTH:
        raise SecurityError(f"the admin key in {source} is shorter than {MIN_KEY_LENGTH} characters")
    return key


def grpc_tls(args: argparse.Namespace) -> GrpcTls | None:
    cert, key, client_ca = args.grpc_tls_cert, args.grpc_tls_key, args.grpc_tls_client_ca
    if cert is None and key is None:
        if client_ca is not None:
            raise SecurityError("--grpc-tls-client-ca needs --grpc-tls-cert and --grpc-tls-key")
        return None
    if cert is None or key is None:
        raise SecurityError("--grpc-tls-cert and --grpc-tls-key go together")
    files = {"--grpc-tls-cert": cert, "--grpc-tls-key": key, "--grpc-tls-client-ca": client_ca}
    for flag, path in files.items():
        if path is not None:
            _check_pem(flag, path)
    return GrpcTls(cert, key, client_ca)


def _check_pem(flag: str, path: Path) -> None:
    try:
        head = path.read_bytes()[:4096]
    except OSError as exc:
        raise SecurityError(f"{flag} {path}: {exc.strerror or exc}") from None
    if b"-----BEGIN " not in head:
        raise SecurityError(f"{flag} {path}: not a PEM file (no -----BEGIN line)")
