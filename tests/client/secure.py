"""Test-time TLS material and a TLS front for Triton's HTTP port.

Certificates come from the ``openssl`` command (a test CA, a server certificate for
127.0.0.1, a client certificate, and a second "rogue" CA with its own client
certificate). Triton's HTTP server has no TLS, so ``https://`` goes through a small
nginx started here, as it would in production behind the balancer.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ds_triton.server_process.tritonserver import Ports


@dataclass(frozen=True)
class Certificates:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    rogue_ca: Path
    rogue_cert: Path
    rogue_key: Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _new_key_request(name: str, cwd: Path) -> None:
    _openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=cwd,
    )  # fmt: skip


def _new_ca(name: str, cwd: Path) -> None:
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2", "-subj", f"/CN={name}", cwd=cwd,
    )  # fmt: skip


def _sign(name: str, ca: str, extensions: str, cwd: Path) -> None:
    _new_key_request(name, cwd)
    (cwd / f"{name}.ext").write_text(extensions)
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
        "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext", cwd=cwd,
    )  # fmt: skip


def make_certificates(folder: Path) -> Certificates:
    """A CA, a server certificate for 127.0.0.1/localhost, client certificates of two CAs."""
    folder.mkdir(parents=True, exist_ok=True)
    _new_ca("ca", folder)
    _new_ca("rogue-ca", folder)
    _sign("server", "ca", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n", folder)
    _sign("client", "ca", "extendedKeyUsage=clientAuth\n", folder)
    _sign("rogue", "rogue-ca", "extendedKeyUsage=clientAuth\n", folder)
    return Certificates(
        *(folder / f for f in ("ca.pem", "server.pem", "server.key", "client.pem", "client.key")),
        *(folder / f for f in ("rogue-ca.pem", "rogue.pem", "rogue.key")),
    )


def grpc_tls_args(certs: Certificates) -> tuple[str, ...]:
    """tritonserver's own gRPC TLS flags, with client certificates required (mutual TLS)."""
    return (
        "--grpc-use-ssl=true",
        "--grpc-use-ssl-mutual=true",
        f"--grpc-server-cert={certs.server_cert}",
        f"--grpc-server-key={certs.server_key}",
        f"--grpc-root-cert={certs.ca}",
    )


NGINX_CONF = """
user root;
worker_processes 1;
daemon off;
pid {run}/nginx.pid;
error_log {run}/error.log warn;
events {{ worker_connections 256; }}
http {{
  access_log off;
  client_body_temp_path {run}/body;
  proxy_temp_path {run}/proxy;
  fastcgi_temp_path {run}/fastcgi;
  uwsgi_temp_path {run}/uwsgi;
  scgi_temp_path {run}/scgi;
  server {{
    listen 127.0.0.1:{port} ssl;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    ssl_client_certificate {ca};
    ssl_verify_client on;
    location / {{
      proxy_pass http://127.0.0.1:{upstream};
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
      proxy_read_timeout 120s;
    }}
  }}
}}
"""


@contextlib.contextmanager
def nginx_tls_front(upstream_port: int, certs: Certificates, run_dir: Path) -> Iterator[str]:
    """nginx terminating mutual TLS in front of ``127.0.0.1:upstream_port``; yields its https URL."""
    run_dir.mkdir(parents=True, exist_ok=True)
    port = Ports.free().http
    conf = run_dir / "nginx.conf"
    conf.write_text(
        NGINX_CONF.format(
            run=run_dir, port=port, cert=certs.server_cert, key=certs.server_key, ca=certs.ca,
            upstream=upstream_port,
        )
    )  # fmt: skip
    process = subprocess.Popen(
        ["nginx", "-c", str(conf), "-p", str(run_dir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"nginx exited: {(run_dir / 'error.log').read_text()[-2000:]}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("nginx did not listen within 20 s")
            time.sleep(0.1)
        yield f"https://127.0.0.1:{port}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)  # the master and its worker
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
