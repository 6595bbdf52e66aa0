"""``ds-triton-client`` commands in-process against real servers: readable and ``--json`` output."""

from __future__ import annotations

import json

import pytest

from ds_triton_client.cli import main
from tests.client.conftest import EMBED_MODEL, Replica, dead_url

pytestmark = [pytest.mark.server, pytest.mark.slow]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_health_models_stats_and_embed(replica_a: Replica, capsys: pytest.CaptureFixture[str]) -> None:
    url = replica_a.http_url
    code, out, _ = run(capsys, "--url", url, "health", "--model", EMBED_MODEL)
    assert code == 0 and "READY" in out and url in out
    code, out, _ = run(capsys, "--url", url, "--json", "models")
    assert code == 0 and json.loads(out)[0]["name"] == EMBED_MODEL
    code, out, _ = run(capsys, "--url", replica_a.grpc_url, "embed", "hello", "world")
    assert code == 0 and "2 embedding(s) of dim 384" in out
    code, out, _ = run(capsys, "--url", url, "--json", "embed", "hello")
    assert code == 0 and json.loads(out)["shape"] == [1, 384]
    code, out, _ = run(capsys, "--url", url, "stats", EMBED_MODEL)
    assert code == 0 and "inferences=" in out and "avg queue=" in out


def test_errors_are_typed_and_exit_nonzero(replica_a: Replica, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "--url", replica_a.http_url, "embed", "   ")
    assert code == 1 and "InvalidInputError" in err and "empty" in err
    code, out, _ = run(capsys, "--url", dead_url(), "--json", "--timeout", "2", "models")
    assert code == 1 and json.loads(out)["type"] in ("ServerConnectionError", "DeadlineExceededError")
    code, out, _ = run(capsys, "--url", f"{dead_url()},{replica_a.http_url}", "health")
    assert code == 1 and "NOT READY" in out and "READY" in out


def test_generate_streams_to_the_terminal(
    generation_server: Replica, capsys: pytest.CaptureFixture[str]
) -> None:
    url = generation_server.grpc_url
    code, out, err = run(
        capsys, "--url", url, "generate", "Hello there", "--max-tokens", "5", "--temperature", "0"
    )
    assert code == 0 and out.strip() and "piece(s) streamed" in err
    code, out, _ = run(capsys, "--url", url, "--json", "generate", "Hello there", "--max-tokens", "5")
    answer = json.loads(out)
    assert answer["num_output_tokens"] == 5 and answer["endpoint"] == url
