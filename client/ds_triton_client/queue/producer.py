"""Submit a JSONL/CSV file as jobs: one job per ``texts_per_job`` rows, ids derived from the file.

A run id names one submission of one file with one set of options: it is the
hash of the file and those options unless given, so submitting the same file
again makes the same job ids (the broker drops them as duplicates within its
window; collectors keep one result per row whatever happens).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ds_triton_client.concurrency import gather_bounded
from ds_triton_client.jobs.reader import InputRow, read_rows
from ds_triton_client.jobs.runner import file_sha256
from ds_triton_client.queue.broker import ProducerBroker
from ds_triton_client.queue.job import SUBJECT, Encoding, Job, Task


@dataclass(frozen=True)
class RunSpec:
    """What makes one submission of a file: the options both ``submit`` and ``collect`` are given.

    Attributes:
        task: ``embed`` or ``generate``.
        model: Model name ("" for the task's default).
        field: JSON field / CSV column with the text (default ``text``, else ``prompt``).
        texts_per_job: Rows per job (an embed job sends them as one request).
        sampling: Generation parameters.
        run_id: The submission's name; derived from the file and the options when empty.
    """

    task: Task
    model: str = ""
    field: str | None = None
    texts_per_job: int = 1
    sampling: Mapping[str, Any] | None = None
    run_id: str = ""

    def resolve_run_id(self, input_path: Path) -> str:
        """``run_id`` if set (checked to be one subject token), else a hash of the file and options."""
        if self.run_id:
            if not SUBJECT.match(self.run_id) or "." in self.run_id:
                raise ValueError(f"run id {self.run_id!r} must be one subject token (no '.', spaces, * or >)")
            return self.run_id
        identity = json.dumps(
            [file_sha256(input_path), self.task, self.model, self.field, self.texts_per_job,
             dict(self.sampling or {})], sort_keys=True,
        )  # fmt: skip
        return hashlib.sha256(identity.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Submission:
    """What ``submit_file`` sent.

    Attributes:
        run_id: Name of the submission (pass it to ``collect``).
        reply_to: Subject its results are published on.
        jobs: Jobs published (the broker may have dropped some as duplicates of an earlier submit).
        rows: Rows in the file.
        unreadable_rows: Rows not submitted because they could not be read (``collect`` reports them).
    """

    run_id: str
    reply_to: str
    jobs: int
    rows: int
    unreadable_rows: int

    def as_dict(self) -> dict[str, object]:
        return {"run_id": self.run_id, "reply_to": self.reply_to, "jobs": self.jobs, "rows": self.rows,
                "unreadable_rows": self.unreadable_rows}  # fmt: skip


def job_id(run_id: str, first_row: int) -> str:
    return f"{run_id}:{first_row}"


def plan_jobs(
    rows: Sequence[InputRow],
    spec: RunSpec,
    run_id: str,
    reply_to: str,
    *,
    encoding: Encoding = "base64",
    deadline_s: float | None = None,
    timeout_s: float | None = None,
) -> list[Job]:
    """Jobs for the readable rows, ``texts_per_job`` consecutive rows each (a gap starts a new job).

    Each job's metadata holds ``run``, ``row`` (its first row) and ``rows``, so a
    collector puts its outputs back in input order.
    """
    if spec.texts_per_job < 1:
        raise ValueError("texts_per_job must be >= 1")
    groups: list[list[InputRow]] = []
    for row in rows:
        if row.error is not None:
            continue
        last = groups[-1] if groups else None
        if last and len(last) < spec.texts_per_job and last[-1].index == row.index - 1:
            last.append(row)
        else:
            groups.append([row])
    deadline = time.time() + deadline_s if deadline_s else None
    return [
        Job(
            id=job_id(run_id, group[0].index),
            task=spec.task,
            inputs=tuple(str(r.text) for r in group),
            model=spec.model,
            parameters=dict(spec.sampling or {}) if spec.task == "generate" else {},
            encoding=encoding,
            deadline=deadline,
            reply_to=reply_to,
            metadata={"run": run_id, "row": group[0].index, "rows": len(group)},
            timeout_s=timeout_s,
        )
        for group in groups
    ]


async def submit_jobs(
    broker: ProducerBroker, jobs: Sequence[Job], *, concurrency: int = 64, progress: bool = False
) -> int:
    """Publish ``jobs`` (each stored durably, deduplicated by id); returns how many were sent.

    Each job is stamped with ``submitted_at`` as it is sent (end-to-end latency).
    """
    with tqdm(total=len(jobs), disable=not progress, unit="job", desc="submit") as bar:

        async def send(job: Job) -> None:
            stamped = dataclasses.replace(job, submitted_at=time.time())
            await broker.publish(broker.names.job_subject(job.task), stamped.encode(), job.id)
            bar.update(1)

        await gather_bounded(send, list(jobs), concurrency)
    return len(jobs)


async def submit_file(
    broker: ProducerBroker,
    input_path: Path,
    spec: RunSpec,
    *,
    encoding: Encoding = "base64",
    deadline_s: float | None = None,
    timeout_s: float | None = None,
    progress: bool = True,
) -> Submission:
    """Read ``input_path`` and publish its rows as jobs (see ``plan_jobs``).

    Raises:
        ValueError: Unreadable file or bad options.
        BrokerError: A job could not be stored (rerun: the ones already sent are deduplicated).
    """
    rows = read_rows(input_path, spec.field)
    run_id = spec.resolve_run_id(input_path)
    reply_to = broker.names.result_subject(run_id)
    jobs = plan_jobs(rows, spec, run_id, reply_to, encoding=encoding, deadline_s=deadline_s,
                     timeout_s=timeout_s)  # fmt: skip
    await submit_jobs(broker, jobs, progress=progress)
    return Submission(run_id, reply_to, len(jobs), len(rows), sum(r.error is not None for r in rows))
