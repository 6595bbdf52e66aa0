"""`ds-triton serve`'s security options against a real server, with certificates made here.

One server runs with an admin key and mutual gRPC TLS: the restricted APIs refuse
requests without the key on HTTP and gRPC and answer with it; inference, health,
metadata and statistics stay open; a plaintext gRPC client, a client without a
certificate and one whose certificate another CA signed are refused; the server
presents the certificate it was given; everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from ds_triton.server_process.tritonserver import ADMIN_HEADER, GRPC_ADMIN_HEADER
from tests.serve_process import ServeProcess, serving

pytestmark = [pytest.mark.server, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
MODEL = "text_generation"
KEY = "s3cret-admin-key-for-tests-0123456789"


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    rogue_cert: Path  # signed by another CA
    rogue_key: Path


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_pki(folder: Path) -> Pki:
    """A CA, a server certificate for localhost/127.0.0.1, a client certificate and a rogue one."""
    folder.mkdir()
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for ca in ("ca", "rogue_ca"):
        openssl("req", "-x509", *ec, "-keyout", f"{ca}.key", "-out", f"{ca}.pem", "-days", "1",
                "-subj", f"/CN={ca}", cwd=folder)  # fmt: skip
    (folder / "server.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    for name, ca, extra in (("server", "ca", ["-extfile", "server.ext"]), ("client", "ca", []),
                            ("rogue", "rogue_ca", [])):  # fmt: skip
        openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}",
                cwd=folder)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
                "-CAcreateserial", "-out", f"{name}.pem", "-days", "1", *extra, cwd=folder)  # fmt: skip
    return Pki(*(folder / name for name in (
        "ca.pem", "server.pem", "server.key", "client.pem", "client.key", "rogue.pem", "rogue.key")))


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServeProcess, Pki]]:
    work = tmp_path_factory.mktemp("secured")
    pki = make_pki(work / "pki")
    repository = work / "model_repository"
    shutil.copytree(ROOT / "model_repository" / MODEL, repository / MODEL,
                    ignore=shutil.ignore_patterns("__pycache__"), symlinks=True)
    key_file = work / "admin.key"
    key_file.write_text(KEY + "\n")
    key_file.chmod(0o600)
    with serving(repository, work, extra_args=[
        "--admin-key-file", str(key_file), "--grpc-tls-cert", str(pki.server_cert),
        "--grpc-tls-key", str(pki.server_key), "--grpc-tls-client-ca", str(pki.ca),
    ]) as serve:  # fmt: skip
        yield serve, pki


def http(serve: ServeProcess, method: str, path: str, body: Any = None, key: str | None = None) -> int:
    request = urllib.request.Request(
        f"http://{serve.http_url}{path}",
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={ADMIN_HEADER: key} if key else {},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


RESTRICTED_HTTP: list[tuple[str, str, str, Any]] = [
    ("model-repository", "POST", "/v2/repository/index", {}),
    ("model-config", "GET", f"/v2/models/{MODEL}/config", None),
    ("shared-memory", "GET", "/v2/systemsharedmemory/status", None),
    ("logging", "GET", "/v2/logging", None),
    ("trace", "GET", "/v2/trace/setting", None),
]
OPEN_HTTP: list[tuple[str, str, str, Any]] = [
    ("health", "GET", "/v2/health/ready", None),
    ("metadata", "GET", f"/v2/models/{MODEL}", None),
    ("statistics", "GET", f"/v2/models/{MODEL}/stats", None),
    ("inference", "POST", f"/v2/models/{MODEL}/generate",
     {"text_input": "hi", "parameters": {"max_tokens": 2, "temperature": 0}}),
]  # fmt: skip


@pytest.mark.parametrize(
    ("api", "method", "path", "body"), RESTRICTED_HTTP, ids=[r[0] for r in RESTRICTED_HTTP]
)
def test_restricted_http_apis_need_the_admin_key(
    secured: tuple[ServeProcess, Pki], api: str, method: str, path: str, body: Any
) -> None:
    serve, _ = secured
    assert http(serve, method, path, body) == 403
    assert http(serve, method, path, body, key="wrong-key-of-the-right-length") == 403
    assert http(serve, method, path, body, key=KEY) == 200


@pytest.mark.parametrize(("api", "method", "path", "body"), OPEN_HTTP, ids=[r[0] for r in OPEN_HTTP])
def test_inference_health_metadata_and_statistics_stay_open(
    secured: tuple[ServeProcess, Pki], api: str, method: str, path: str, body: Any
) -> None:
    serve, _ = secured
    assert http(serve, method, path, body) == 200


def tls_client(
    serve: ServeProcess, pki: Pki, cert: Path | None, key: Path | None
) -> grpcclient.InferenceServerClient:
    return grpcclient.InferenceServerClient(
        f"localhost:{serve.ports.grpc}",
        ssl=True,
        root_certificates=str(pki.ca),
        certificate_chain=str(cert) if cert else None,
        private_key=str(key) if key else None,
    )


def test_grpc_with_the_right_certificate_serves_and_restricts_the_repository_api(
    secured: tuple[ServeProcess, Pki],
) -> None:
    serve, pki = secured
    client = tls_client(serve, pki, pki.client_cert, pki.client_key)
    try:
        assert client.is_server_live() and client.is_model_ready(MODEL)
        assert client.get_model_metadata(MODEL).name == MODEL
        with pytest.raises(InferenceServerException, match="restricted"):
            client.get_model_repository_index()
        index = client.get_model_repository_index(headers={GRPC_ADMIN_HEADER: KEY})
        assert [m.name for m in index.models] == [MODEL]
        text = grpcclient.InferInput("text_input", [1], "BYTES")
        text.set_data_from_numpy(np.array([b"hello"], dtype=object))
        answers: list[Any] = []
        client.start_stream(callback=lambda result, error: answers.append(error or result))
        client.async_stream_infer(MODEL, [text])
        client.stop_stream()  # waits for the request to finish
        assert answers and not isinstance(answers[0], InferenceServerException), answers
    finally:
        client.close()


@pytest.mark.parametrize("who", ["plaintext", "no client certificate", "certificate of another CA"])
def test_grpc_clients_without_the_right_certificate_are_refused(
    secured: tuple[ServeProcess, Pki], who: str
) -> None:
    serve, pki = secured
    if who == "plaintext":
        client = grpcclient.InferenceServerClient(serve.grpc_url)
    elif who == "no client certificate":
        client = tls_client(serve, pki, None, None)
    else:
        client = tls_client(serve, pki, pki.rogue_cert, pki.rogue_key)
    try:
        with pytest.raises(InferenceServerException):
            client.is_server_live(client_timeout=10)
    finally:
        client.close()


def test_the_server_presents_its_certificate(secured: tuple[ServeProcess, Pki]) -> None:
    serve, pki = secured
    context = ssl.create_default_context(cafile=str(pki.ca))
    context.load_cert_chain(str(pki.client_cert), str(pki.client_key))
    context.set_alpn_protocols(["h2"])
    with socket.create_connection(("127.0.0.1", serve.ports.grpc), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as tls:  # fmt: skip
        presented = tls.getpeercert(binary_form=True)
    assert presented == ssl.PEM_cert_to_DER_cert(pki.server_cert.read_text())


def listening_addresses(port: int) -> set[str]:
    """Local addresses with a listening TCP socket on ``port`` (from /proc/net/tcp and tcp6)."""
    found = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state != "0A" or int(hex_port, 16) != port:  # 0A: LISTEN
                continue
            raw = bytes.fromhex(address)
            if len(raw) == 16:  # four little-endian 32-bit words
                raw = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
                text = socket.inet_ntop(socket.AF_INET6, raw)
                found.add(text.removeprefix("::ffff:"))
            else:
                found.add(socket.inet_ntoa(raw[::-1]))
    return found


def test_everything_listens_on_loopback_only_by_default(secured: tuple[ServeProcess, Pki]) -> None:
    serve, _ = secured
    for port in (serve.ports.http, serve.ports.grpc, serve.ports.metrics, serve.supervisor_metrics_port):
        assert listening_addresses(port) == {"127.0.0.1"}, port
