"""``ds-triton-client batch`` against a real replica: killed mid-run, resumed, one output per row."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ds_triton_client import Client
from ds_triton_client.jobs.journal import partial_dir
from tests.client.conftest import EMBED_MODEL, Replica

pytestmark = [pytest.mark.server, pytest.mark.slow]

CHUNK = 8
CONCURRENCY = 2


def batch_command(url: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "ds_triton_client.cli", "--url", url, "batch", *args, "--no-progress"]


def inference_count(client: Client, url: str) -> int:
    return int(client.stats(EMBED_MODEL)[url]["model_stats"][0]["inference_count"])


def settled_inference_count(client: Client, url: str) -> int:
    """The count once the shared replica has finished work that earlier tests left queued."""
    last = inference_count(client, url)
    for _ in range(60):
        time.sleep(0.5)
        now = inference_count(client, url)
        if now == last:
            return now
        last = now
    return last


def journal_records(output: Path) -> int:
    journal = partial_dir(output) / "journal.jsonl"
    return max(0, len(journal.read_bytes().splitlines()) - 1) if journal.exists() else 0


def test_killed_batch_resumes_with_exactly_one_output_per_row(replica_a: Replica, tmp_path: Path) -> None:
    texts = [f"row {i}: {'alpha beta gamma ' * (1 + i % 5)}" for i in range(1200)]
    source = tmp_path / "texts.jsonl"
    source.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    output = tmp_path / "vectors.npy"
    url = replica_a.http_url
    args = [
        "embed", str(source), str(output), "--chunk-size", str(CHUNK), "--concurrency", str(CONCURRENCY),
    ]  # fmt: skip
    # The reference embed runs at the job's concurrency: the shipped model sheds requests that
    # wait in its queue past 500 ms, which the client's default 8 chunks of 64 can exceed on 2 cores.
    with Client(url, health_interval=0, max_concurrency=CONCURRENCY) as client:
        before = settled_inference_count(client, url)
        process = subprocess.Popen(batch_command(url, *args), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            for _ in range(1200):  # at most ~60 s for the first chunks to land
                if journal_records(output) >= 10 or process.poll() is not None:
                    break
                time.sleep(0.05)
            assert process.poll() is None, "the job finished before it could be interrupted"
            os.kill(process.pid, signal.SIGKILL)
        finally:
            process.kill()
            process.communicate()
        interrupted_at = journal_records(output)
        assert 10 <= interrupted_at < len(texts) // CHUNK and not output.exists()

        resumed = subprocess.run(batch_command(url, *args), capture_output=True, text=True, timeout=300)
        assert resumed.returncode == 0, resumed.stderr
        assert "from an earlier run" in resumed.stdout
        vectors = np.load(output)
        assert vectors.shape == (len(texts), 384) and not np.isnan(vectors).any()
        np.testing.assert_allclose(vectors, client.embed(texts, timeout=300), atol=1e-5)  # right rows
        assert not partial_dir(output).exists() and not output.with_name("vectors.npy.errors.jsonl").exists()
        # Rows journaled before the kill were not sent again; only chunks in flight at the kill were.
        sent = inference_count(client, url) - before - len(texts)  # minus the reference embed above
        assert len(texts) <= sent <= len(texts) + CHUNK * CONCURRENCY

    again = subprocess.run(batch_command(url, *args), capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and "complete" in again.stderr


def test_batch_to_parquet_reports_failed_rows_in_their_own_file(replica_a: Replica, tmp_path: Path) -> None:
    source = tmp_path / "texts.csv"
    source.write_text('id,text\n1,first text\n2,"  "\n3,\n4,fourth text\n')
    output = tmp_path / "vectors.parquet"
    url = replica_a.grpc_url
    done = subprocess.run(
        [*batch_command(url, "embed", str(source), str(output)), "--chunk-size=4"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 3, done.stderr  # finished, with failed rows
    import pyarrow.parquet as pq

    table = pq.read_table(output).to_pylist()
    assert [r["row"] for r in table] == [0, 1, 2, 3]
    assert [r["embedding"] is None for r in table] == [False, True, True, False]
    errors = [
        json.loads(line) for line in (tmp_path / "vectors.parquet.errors.jsonl").read_text().splitlines()
    ]
    assert [e["row"] for e in errors] == [1, 2]
    assert "empty" in errors[0]["error"] and "empty" in errors[1]["error"]


def test_generation_batch_writes_jsonl_in_input_order(generation_server: Replica, tmp_path: Path) -> None:
    source = tmp_path / "prompts.jsonl"
    source.write_text('{"prompt": "Once upon a time"}\n{"prompt": "The sky is"}\n"Hello"\n')
    output = tmp_path / "answers.jsonl"
    done = subprocess.run(
        [
            *batch_command(generation_server.http_url, "generate", str(source), str(output)),
            "--max-tokens=4",
            "--temperature=0",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    assert [(line["row"], line["prompt"]) for line in lines] == [
        (0, "Once upon a time"),
        (1, "The sky is"),
        (2, "Hello"),
    ]
    assert all(line["error"] is None and line["num_output_tokens"] == 4 for line in lines)
