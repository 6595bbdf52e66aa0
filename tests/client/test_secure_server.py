"""TLS, the admin key and capacity errors against a real, locked-down tritonserver.

One server serves a tight copy of ``text_generation`` (one running sequence, no
queue) with Triton's own gRPC mutual TLS and its admin APIs restricted to an admin
key; nginx terminates mutual TLS for its HTTP port. Certificates are made here.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ds_triton_client import (
    AsyncClient,
    Client,
    ClientError,
    OverloadedError,
    PermissionDeniedError,
    ServerConnectionError,
)
from tests.client.conftest import GENERATE_MODEL, ROOT, Replica
from tests.client.secure import Certificates, grpc_tls_args, make_certificates, nginx_tls_front

pytestmark = [pytest.mark.server, pytest.mark.slow]

ADMIN_KEY = "test-admin-key-1234"
RESTRICTED = "model-config,model-repository"
PROMPT = "The capital of France is"
GREEDY: dict[str, Any] = {"max_tokens": 6, "temperature": 0.0, "ignore_eos": True}


@dataclass(frozen=True)
class Secured:
    certs: Certificates
    grpcs_url: str
    https_url: str
    replica: Replica

    def url(self, scheme: str) -> str:
        return self.grpcs_url if scheme == "grpcs" else self.https_url

    def tls(self, **changes: Any) -> dict[str, Any]:
        files = {"ca_file": self.certs.ca, "cert_file": self.certs.client_cert}
        files["key_file"] = self.certs.client_key
        return {k: str(v) if v is not None else None for k, v in {**files, **changes}.items()}


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    root = tmp_path_factory.mktemp("secured")
    certs = make_certificates(root / "certs")
    source = ROOT / "model_repository" / GENERATE_MODEL
    target = root / "repo" / GENERATE_MODEL
    # The tiny checkpoint is copied too: a model reads nothing outside its repository.
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
    spec = json.loads((source / "1" / "model.json").read_text())
    spec["generation"].update(max_concurrent_sequences=1, max_queued_requests=0, max_tokens_limit=1000)
    (target / "1" / "model.json").write_text(json.dumps(spec, indent=2))
    restricted = (
        f"--http-restricted-api={RESTRICTED}:admin-key={ADMIN_KEY}",
        f"--grpc-restricted-protocol={RESTRICTED}:admin-key={ADMIN_KEY}",
    )
    run = root / "run"
    run.mkdir()
    replica = Replica(root / "repo", run, (GENERATE_MODEL,), grpc_tls_args(certs) + restricted).start()
    try:
        with nginx_tls_front(replica.ports.http, certs, root / "nginx") as https_url:
            yield Secured(certs, f"grpcs://127.0.0.1:{replica.ports.grpc}", https_url, replica)
    finally:
        replica.stop()


@pytest.mark.parametrize("scheme", ["grpcs", "https"])
async def test_the_right_certificates_generate_and_stream(secured: Secured, scheme: str) -> None:
    url = secured.url(scheme)
    with Client(url, health_interval=0, **secured.tls()) as client:
        result = client.generate(PROMPT, **GREEDY)
        pieces = list(client.stream(PROMPT, **GREEDY))
        assert client.health()[0]["ready"] is True
    async with AsyncClient(url, health_interval=0, **secured.tls()) as aclient:
        apieces = [p async for p in aclient.stream(PROMPT, **GREEDY)]
    assert result.num_output_tokens == 6 and result.endpoint == url
    assert "".join(pieces) == "".join(apieces) == result.text and len(pieces) > 1


def test_plaintext_and_wrong_certificates_are_refused(secured: Secured) -> None:
    plaintext = secured.grpcs_url.replace("grpcs://", "grpc://")
    rogue = {"cert_file": secured.certs.rogue_cert, "key_file": secured.certs.rogue_key}
    cases: list[tuple[str, dict[str, Any]]] = [
        (plaintext, {}),  # a plaintext client on the TLS port
        (secured.grpcs_url, secured.tls(**rogue)),  # a client certificate of another CA
        (secured.grpcs_url, secured.tls(cert_file=None, key_file=None)),  # no client certificate
        (secured.grpcs_url, secured.tls(ca_file=secured.certs.rogue_ca)),  # the server is not trusted
        (secured.https_url, secured.tls(ca_file=secured.certs.rogue_ca)),
    ]
    for url, tls in cases:
        client = Client(url, health_interval=0, max_attempts=1, timeout=10, **tls)
        with client, pytest.raises(ServerConnectionError):
            client.generate(PROMPT, **GREEDY)
    # nginx answers a missing client certificate with 400 and its reason.
    client = Client(secured.https_url, health_interval=0, ca_file=str(secured.certs.ca), max_attempts=1)
    with client, pytest.raises(ClientError, match="SSL certificate"):
        client.generate(PROMPT, **GREEDY)


@pytest.mark.parametrize("scheme", ["grpcs", "https"])
def test_the_servers_own_certificate_is_served(secured: Secured, scheme: str) -> None:
    port = int(secured.url(scheme).rsplit(":", 1)[1])
    context = ssl.create_default_context(cafile=str(secured.certs.ca))
    context.load_cert_chain(str(secured.certs.client_cert), str(secured.certs.client_key))
    context.set_alpn_protocols(["h2", "http/1.1"])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        served = tls.getpeercert(binary_form=True)
    assert served == ssl.PEM_cert_to_DER_cert(secured.certs.server_cert.read_text())


@pytest.mark.parametrize("scheme", ["grpcs", "https"])
def test_the_admin_key_opens_the_restricted_apis(secured: Secured, scheme: str, tmp_path: Path) -> None:
    url = secured.url(scheme)
    with Client(url, health_interval=0, **secured.tls()) as client:
        with pytest.raises(PermissionDeniedError, match="restricted"):
            client.models()
        # Inference needs no key: the model's shape comes from its (open) metadata.
        assert client.generate(PROMPT, **GREEDY).num_output_tokens == 6
        assert client.model_info(GENERATE_MODEL).max_batch_size == 0
    with Client(url, health_interval=0, admin_key=ADMIN_KEY, **secured.tls()) as admin:
        assert [m["name"] for m in admin.models()] == [GENERATE_MODEL]
        assert admin.model_info(GENERATE_MODEL).decoupled  # read from the config this time
    key_file = tmp_path / "admin.key"
    key_file.write_text(ADMIN_KEY + "\n")
    tls = secured.tls()
    cli = [sys.executable, "-m", "ds_triton_client.cli", "--url", url, "--ca-cert", tls["ca_file"],
           "--client-cert", tls["cert_file"], "--client-key", tls["key_file"], "--json"]  # fmt: skip
    listed = subprocess.run(
        [*cli, "--admin-key-file", str(key_file), "models"], capture_output=True, text=True
    )
    assert listed.returncode == 0 and json.loads(listed.stdout)[0]["name"] == GENERATE_MODEL, listed.stderr
    refused = subprocess.run([*cli, "models"], capture_output=True, text=True)
    assert refused.returncode == 1 and json.loads(refused.stdout)["type"] == "PermissionDeniedError"


@contextlib.contextmanager
def slot_taken(secured: Secured) -> Iterator[None]:
    """The tight model's only sequence slot held by a long stream while the block runs."""
    with Client(secured.grpcs_url, health_interval=0, **secured.tls()) as holder:
        stream = holder.stream(PROMPT, max_tokens=1000, ignore_eos=True, temperature=0.0)
        next(stream)  # running now; closing the stream cancels it
        try:
            yield
        finally:
            stream.close()


@pytest.mark.parametrize("scheme", ["grpcs", "https"])
def test_capacity_errors_are_overloaded_on_both_protocols_and_retried_elsewhere(
    secured: Secured, generation_server: Replica, scheme: str
) -> None:
    url = secured.url(scheme)
    spare = generation_server.grpc_url if scheme == "grpcs" else generation_server.http_url
    with slot_taken(secured):
        with Client(url, health_interval=0, max_attempts=1, **secured.tls()) as client:
            with pytest.raises(OverloadedError, match="too many concurrent requests"):
                client.generate(PROMPT, **GREEDY)
            with pytest.raises(OverloadedError):
                list(client.stream(PROMPT, **GREEDY))
        with Client([url, spare], health_interval=0, **secured.tls()) as failover:
            vars(failover.balancer)["_rotation"] = iter([0] * 10)  # the busy endpoint first
            result = failover.generate(PROMPT, **GREEDY)
    assert result.endpoint == spare and result.num_output_tokens == 6
    assert failover.balancer.snapshot()[0]["failures"] == 1
