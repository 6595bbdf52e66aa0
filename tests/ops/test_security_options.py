"""`ds-triton serve` security options: where the key comes from, what tritonserver is told."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from ds_triton.server_process.security import (
    ADMIN_KEY_ENV,
    SecurityError,
    add_security_arguments,
    read_admin_key,
    security_options,
)
from ds_triton.server_process.tritonserver import GrpcTls, ServerOptions

PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
KEY = "0123456789abcdef-admin"


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_security_arguments(parser)
    return parser.parse_args(argv)


def test_the_key_comes_from_a_file_or_the_environment(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")
    key_file.chmod(0o600)
    assert read_admin_key(key_file, env={}) == KEY
    assert read_admin_key(None, env={ADMIN_KEY_ENV: KEY}) == KEY
    assert read_admin_key(None, env={}) is None


@pytest.mark.parametrize(("content", "message"), [
    ("", "is empty"),
    ("short", "shorter than 16"),
    ("has a space in the middle!!", "no spaces"),
])  # fmt: skip
def test_unusable_keys_are_refused_with_the_reason(tmp_path: Path, content: str, message: str) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(content)
    with pytest.raises(SecurityError, match=message):
        read_admin_key(key_file, env={})


def test_a_missing_key_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(SecurityError, match=r"missing\.key"):
        read_admin_key(tmp_path / "missing.key", env={})


def test_tls_files_must_come_together_and_be_pem(tmp_path: Path) -> None:
    cert, key, ca, junk = (tmp_path / n for n in ("cert.pem", "key.pem", "ca.pem", "junk.pem"))
    for path in (cert, key, ca):
        path.write_text(PEM)
    junk.write_text("not a certificate")
    with pytest.raises(SecurityError, match="go together"):
        security_options(parse("--grpc-tls-cert", str(cert)))
    with pytest.raises(SecurityError, match="needs --grpc-tls-cert"):
        security_options(parse("--grpc-tls-client-ca", str(ca)))
    with pytest.raises(SecurityError, match="not a PEM file"):
        security_options(parse("--grpc-tls-cert", str(junk), "--grpc-tls-key", str(key)))
    tls = security_options(parse("--grpc-tls-cert", str(cert), "--grpc-tls-key", str(key),
                                 "--grpc-tls-client-ca", str(ca)))["grpc_tls"]  # fmt: skip
    assert tls == GrpcTls(cert, key, ca)


def test_tritonserver_is_told_to_restrict_the_admin_apis_and_use_tls(tmp_path: Path) -> None:
    tls = GrpcTls(tmp_path / "c", tmp_path / "k", tmp_path / "ca")
    options = ServerOptions(tmp_path, host="0.0.0.0", admin_key=KEY, grpc_tls=tls)
    args = options.command(tmp_path)
    apis = "shared-memory,model-repository,model-config,logging,trace"
    assert f"--http-restricted-api={apis}:admin-key={KEY}" in args
    assert f"--grpc-restricted-protocol={apis}:admin-key={KEY}" in args
    assert "--grpc-use-ssl-mutual=true" in args and f"--grpc-root-cert={tmp_path / 'ca'}" in args
    assert {"--http-address=0.0.0.0", "--grpc-address=0.0.0.0", "--metrics-address=0.0.0.0"} <= set(args)
    assert options.connect_host == "127.0.0.1"
    plain = ServerOptions(tmp_path).command(tmp_path)
    assert "--http-address=127.0.0.1" in plain
    assert not any("restricted" in a or "ssl" in a for a in plain)


def test_serve_refuses_to_start_with_an_unusable_key(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("short")
    result = subprocess.run(
        [sys.executable, "-m", "ds_triton.cli", "serve", "--model-repository", str(tmp_path),
         "--admin-key-file", str(key_file)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert "shorter than 16 characters" in result.stderr
