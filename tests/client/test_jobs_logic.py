"""Batch jobs without a server: reading, the journal, resume and failed-row reporting."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from ds_triton_client.codec import GenerationResult
from ds_triton_client.errors import InvalidInputError, ServerConnectionError
from ds_triton_client.jobs import Journal, JournalMismatchError, read_rows, run_batch
from ds_triton_client.jobs.journal import partial_dir
from ds_triton_client.model_info import ModelInfo

DIM = 4


class Interrupted(BaseException):
    """Stands in for Ctrl-C / a kill in the middle of a job."""


class FakeClient:
    """Deterministic stand-in for AsyncClient: vector of a text = its length and code points."""

    def __init__(self, fail_after: int | None = None, bad: str = "BAD", down: str = "DOWN") -> None:
        self.calls: list[list[str]] = []
        self.fail_after = fail_after
        self.bad = bad
        self.down = down

    async def model_info(self, model: str, timeout: float | None = None) -> ModelInfo:
        return ModelInfo(model, 3, {"embedding": (DIM,)}, False)

    def _tick(self, texts: list[str]) -> None:
        if self.fail_after is not None and len(self.calls) >= self.fail_after:
            raise Interrupted
        self.calls.append(texts)

    async def embed(self, texts: Sequence[str], model: str = "", timeout: float | None = None) -> np.ndarray:
        self._tick(list(texts))
        if any(self.bad in t for t in texts):
            raise InvalidInputError("text contains BAD")
        if any(self.down in t for t in texts):
            raise ServerConnectionError("connection refused")
        return np.array([vector(t) for t in texts], dtype=np.float32)

    async def generate(
        self, prompt: str, model: str = "", timeout: float | None = None, **sampling: Any
    ) -> GenerationResult:
        self._tick([prompt])
        if self.bad in prompt:
            raise InvalidInputError("prompt contains BAD")
        return GenerationResult(prompt.upper(), len(prompt), sampling.get("max_tokens", 1), "length")


def vector(text: str) -> list[float]:
    return [float(len(text)), float(ord(text[0])), float(ord(text[-1])), 1.0]


def write_jsonl(path: Path, texts: list[str]) -> Path:
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    return path


def test_reader_jsonl_and_csv_keep_bad_rows_as_errors(tmp_path: Path) -> None:
    jsonl = tmp_path / "in.jsonl"
    jsonl.write_text('"plain"\n{"text": "obj"}\n\n{"other": 1}\nnot json\n{"prompt": "p"}\n')
    rows = read_rows(jsonl)
    assert [r.text for r in rows] == ["plain", "obj", None, None, "p"]
    assert "no field" in str(rows[2].error) and "invalid JSON" in str(rows[3].error)
    csv_path = tmp_path / "in.csv"
    csv_path.write_text('id,prompt\n1,"a, b"\n2,\n')
    assert [(r.text, r.error is None) for r in read_rows(csv_path)] == [("a, b", True), (None, False)]
    with pytest.raises(ValueError, match="column"):
        read_rows(csv_path, field="text")


def test_journal_drops_a_cut_last_line_and_refuses_another_job(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j", {"input": "x"})
    assert journal.open() == {}
    journal.add_part([0, 1], np.zeros((2, DIM)))
    journal.add_error(2, "boom")
    with open(tmp_path / "j" / "journal.jsonl", "ab") as handle:
        handle.write(b'{"row": 3, "res')  # killed mid-write
    done = Journal(tmp_path / "j", {"input": "x"}).open()
    assert sorted(done) == [0, 1, 2] and done[2] == {"error": "boom"}
    with pytest.raises(JournalMismatchError):
        Journal(tmp_path / "j", {"input": "y"}).open()


async def test_embed_job_interrupted_then_resumed_runs_each_row_exactly_once(tmp_path: Path) -> None:
    texts = [f"text number {i}" for i in range(20)]
    source = write_jsonl(tmp_path / "in.jsonl", texts)
    output = tmp_path / "out.npy"
    first = FakeClient(fail_after=3)
    with pytest.raises(Interrupted):
        await run_batch(first, "embed", source, output, model="m", concurrency=1, progress=False)
    assert not output.exists() and partial_dir(output).exists()
    second = FakeClient()
    summary = await run_batch(second, "embed", source, output, model="m", concurrency=2, progress=False)
    sent = [t for call in first.calls + second.calls for t in call]
    assert sorted(sent) == sorted(texts)  # nothing redone, nothing lost
    assert summary.resumed == 9 and summary.succeeded == 20 and summary.failed == 0
    np.testing.assert_array_equal(np.load(output), np.array([vector(t) for t in texts], dtype=np.float32))
    assert not partial_dir(output).exists()


async def test_bad_rows_are_isolated_and_reported_with_their_error(tmp_path: Path) -> None:
    texts = ["a", "BAD one", "c", "d", "DOWN e", "f"]
    source = write_jsonl(tmp_path / "in.jsonl", texts)
    (tmp_path / "in.jsonl").write_text(source.read_text() + '{"nope": 1}\n')
    output = tmp_path / "out.parquet"
    summary = await run_batch(FakeClient(), "embed", source, output, model="m", progress=False)
    # Chunks of 3: an invalid row fails alone; a chunk that cannot reach any server fails whole.
    assert (summary.total, summary.failed) == (7, 5)
    errors = [json.loads(line) for line in (tmp_path / "out.parquet.errors.jsonl").read_text().splitlines()]
    assert [e["row"] for e in errors] == [1, 3, 4, 5, 6]
    assert "BAD" in errors[0]["error"] and "connection refused" in errors[1]["error"]
    assert "no field" in errors[4]["error"] and errors[4]["input"] is None
    table = pq.read_table(output).to_pylist()
    assert [r["row"] for r in table] == list(range(7))
    assert table[0]["embedding"] == pytest.approx(vector("a"))
    assert table[2]["embedding"] == pytest.approx(vector("c"))  # same chunk as the bad row, still done
    assert table[1]["embedding"] is None and table[4]["embedding"] is None


async def test_npy_marks_failed_rows_nan_and_retry_failed_reruns_only_them(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", ["ok", "DOWN x", "fine"])
    output = tmp_path / "out.npy"
    await run_batch(FakeClient(), "embed", source, output, model="m", chunk_size=1, progress=False)
    matrix = np.load(output)
    assert not np.isnan(matrix[0]).any() and np.isnan(matrix[1]).all() and not np.isnan(matrix[2]).any()
    assert partial_dir(output).exists()  # kept for --retry-failed
    recovered = FakeClient(down="never")
    summary = await run_batch(
        recovered, "embed", source, output, model="m", retry_failed=True, progress=False
    )
    assert recovered.calls == [["DOWN x"]] and summary.failed == 0
    assert not np.isnan(np.load(output)).any() and not partial_dir(output).exists()
    assert not (tmp_path / "out.npy.errors.jsonl").exists()


async def test_generate_job_writes_one_line_per_row_in_input_order(tmp_path: Path) -> None:
    prompts = [f"p{i}" for i in range(7)] + ["BAD"]
    source = write_jsonl(tmp_path / "in.jsonl", prompts)
    output = tmp_path / "out.jsonl"
    first = FakeClient(fail_after=4)
    with pytest.raises(Interrupted):
        await run_batch(
            first, "generate", source, output, model="m", sampling={"max_tokens": 2}, progress=False
        )
    second = FakeClient()
    summary = await run_batch(
        second,
        "generate",
        source,
        output,
        model="m",
        sampling={"max_tokens": 2},
        concurrency=3,
        progress=False,
    )
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    assert [line["row"] for line in lines] == list(range(8))
    assert [line["text"] for line in lines[:7]] == [p.upper() for p in prompts[:7]]
    assert lines[7]["text"] is None and "BAD" in lines[7]["error"]
    assert summary.failed == 1 and len(first.calls) + len(second.calls) == 8


async def test_changed_sampling_is_a_different_job(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", ["x", "y"])
    output = tmp_path / "out.jsonl"
    with pytest.raises(Interrupted):
        await run_batch(FakeClient(fail_after=1), "generate", source, output, model="m", progress=False)
    with pytest.raises(JournalMismatchError):
        await run_batch(
            FakeClient(), "generate", source, output, model="m", sampling={"max_tokens": 9}, progress=False
        )


async def test_output_suffix_must_fit_the_task(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", ["x"])
    with pytest.raises(ValueError, match=r"\.jsonl"):
        await run_batch(FakeClient(), "generate", source, tmp_path / "out.npy", model="m", progress=False)
