"""submit's job plan and collect's placement against an in-memory broker: input order, one output
per row whatever the result stream repeats, errors in the errors file, resumable."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ds_triton_client.jobs.journal import partial_dir
from ds_triton_client.jobs.reader import read_rows
from ds_triton_client.queue.collector import CollectTimeoutError, collect
from ds_triton_client.queue.job import Job, JobFailure, JobResult, encode_embeddings
from ds_triton_client.queue.producer import RunSpec, plan_jobs, submit_file
from tests.client.queue.fakes import FakeBroker


def write_input(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


def vector(row: int) -> np.ndarray:
    return np.array([row, row * 0.5, -1.0], dtype=np.float32)


def answer(broker: FakeBroker, job: Job, *, fail: str | None = None, encoding: str = "base64") -> None:
    """What a worker would publish for ``job`` (embeddings: row r → vector(r))."""
    first = int(job.metadata["row"])
    outputs = None if fail else {
        "encoding": encoding, "dim": 3,
        "embeddings": encode_embeddings(np.stack([vector(first + i) for i in range(len(job.inputs))]),
                                        encoding),  # type: ignore[arg-type]
    }  # fmt: skip
    result = JobResult(id=job.id, task=job.task, model="m", outputs=outputs, attempts=1, worker="w",
                       error=JobFailure("InvalidInputError", fail) if fail else None, timings={},
                       metadata=job.metadata)  # fmt: skip
    broker.published.setdefault(str(job.reply_to), []).append(result.encode())


def submitted(broker: FakeBroker) -> list[Job]:
    return [Job.parse(p) for p in broker.published.get("jobs.jobs.embed", [])]


def test_jobs_group_consecutive_readable_rows(tmp_path: Path) -> None:
    source = write_input(tmp_path / "in.jsonl", ['"a"', '"b"', "{bad", '"c"', '"d"', '"e"'])
    rows = read_rows(source)
    jobs = plan_jobs(rows, RunSpec("embed", texts_per_job=2), "run1", "jobs.results.run1")
    assert [(j.id, j.inputs, j.metadata["row"], j.metadata["rows"]) for j in jobs] == [
        ("run1:0", ("a", "b"), 0, 2), ("run1:3", ("c", "d"), 3, 2), ("run1:5", ("e",), 5, 1)]  # fmt: skip
    assert all(j.reply_to == "jobs.results.run1" for j in jobs)


def test_the_run_id_follows_the_file_and_options(tmp_path: Path) -> None:
    source = write_input(tmp_path / "in.jsonl", ['"a"'])
    first = RunSpec("embed").resolve_run_id(source)
    assert RunSpec("embed").resolve_run_id(source) == first
    assert RunSpec("embed", texts_per_job=2).resolve_run_id(source) != first
    assert RunSpec("embed", run_id="mine").resolve_run_id(source) == "mine"
    with pytest.raises(ValueError, match="subject token"):
        RunSpec("embed", run_id="a.b").resolve_run_id(source)


async def test_collect_puts_results_in_input_order_once_each(tmp_path: Path) -> None:
    source = write_input(tmp_path / "in.jsonl", [json.dumps({"text": f"t{i}"}) for i in range(10)])
    broker = FakeBroker()
    spec = RunSpec("embed", texts_per_job=3)
    submission = await submit_file(broker, source, spec, progress=False)
    jobs = submitted(broker)
    assert submission.jobs == len(jobs) == 4 and all(j.submitted_at for j in jobs)
    for job in reversed(jobs):  # out of order, and the second job twice
        answer(broker, job, encoding="float" if job is jobs[1] else "base64")
    answer(broker, jobs[1])
    output = tmp_path / "out.npy"
    summary, stats = await collect(broker, source, output, spec, progress=False)
    assert summary.total == 10 and summary.failed == 0 and stats.duplicates == 1
    np.testing.assert_array_equal(np.load(output), np.stack([vector(i) for i in range(10)]))
    assert not partial_dir(output).exists()


async def test_failed_jobs_and_unreadable_rows_go_to_the_errors_file(tmp_path: Path) -> None:
    source = write_input(tmp_path / "in.jsonl", ['"a"', "{oops", '"   "', '"d"'])
    broker = FakeBroker()
    spec = RunSpec("embed")
    await submit_file(broker, source, spec, progress=False)
    for job in submitted(broker):
        answer(broker, job, fail="row 0 is empty" if job.inputs == ("   ",) else None)
    output = tmp_path / "out.parquet"
    summary, _ = await collect(broker, source, output, spec, progress=False)
    assert (summary.succeeded, summary.failed) == (2, 2)
    errors = [json.loads(line) for line in (tmp_path / "out.parquet.errors.jsonl").read_text().splitlines()]
    assert [e["row"] for e in errors] == [1, 2]
    assert "invalid JSON" in errors[0]["error"] and "row 0 is empty" in errors[1]["error"]
    import pyarrow.parquet as pq

    table = pq.read_table(output).to_pylist()
    assert [r["row"] for r in table] == [0, 1, 2, 3] and table[1]["embedding"] is None
    np.testing.assert_array_equal(table[3]["embedding"], vector(3))


async def test_an_interrupted_collect_resumes_from_its_journal(tmp_path: Path) -> None:
    source = write_input(tmp_path / "in.jsonl", [f'"t{i}"' for i in range(6)])
    broker = FakeBroker()
    spec = RunSpec("embed")
    await submit_file(broker, source, spec, progress=False)
    jobs = submitted(broker)
    for job in jobs[:4]:
        answer(broker, job)
    output = tmp_path / "out.npy"
    with pytest.raises(CollectTimeoutError, match="2 of 6 rows"):
        await collect(broker, source, output, spec, timeout_s=0.05, progress=False)
    assert not output.exists() and partial_dir(output).exists()
    for job in jobs[4:]:
        answer(broker, job)
    summary, stats = await collect(broker, source, output, spec, progress=False)
    assert summary.resumed == 4 and summary.failed == 0
    assert stats.duplicates == 4  # replayed from the start; the journal already had them
    np.testing.assert_array_equal(np.load(output), np.stack([vector(i) for i in range(6)]))


async def test_results_of_other_runs_and_garbage_are_skipped(tmp_path: Path) -> None:
    source = write_input(tmp_path / "in.jsonl", ['"a"'])
    broker = FakeBroker()
    spec = RunSpec("embed")
    await submit_file(broker, source, spec, progress=False)
    (job,) = submitted(broker)
    subject = str(job.reply_to)
    broker.published[subject] = [b"garbage"]
    stranger = Job(id="x", task="embed", inputs=("q",), reply_to=subject,
                   metadata={"run": "other", "row": 0, "rows": 1})  # fmt: skip
    answer(broker, stranger)
    answer(broker, job)
    summary, stats = await collect(broker, source, tmp_path / "out.npy", spec, progress=False)
    assert summary.failed == 0 and stats.foreign == 2


async def test_generation_results_are_written_as_batch_writes_them(tmp_path: Path) -> None:
    source = write_input(tmp_path / "in.jsonl", ['{"prompt": "p0"}', '{"prompt": "p1"}'])
    broker = FakeBroker()
    spec = RunSpec("generate", sampling={"max_tokens": 2})
    await submit_file(broker, source, spec, progress=False)
    for payload in broker.published["jobs.jobs.generate"]:
        job = Job.parse(payload)
        assert job.parameters == {"max_tokens": 2}
        generation = {"text": job.inputs[0] + "!", "num_input_tokens": 1, "num_output_tokens": 2,
                      "finish_reason": "length"}  # fmt: skip
        result = JobResult(id=job.id, task="generate", model="g", error=None, attempts=1, worker="w",
                           timings={}, metadata=job.metadata, outputs={"generations": [generation]})
        broker.published.setdefault(str(job.reply_to), []).append(result.encode())
    output = tmp_path / "out.jsonl"
    await collect(broker, source, output, spec, progress=False)
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    assert [(line["row"], line["prompt"], line["text"], line["error"]) for line in lines] == [
        (0, "p0", "p0!", None), (1, "p1", "p1!", None)]  # fmt: skip
