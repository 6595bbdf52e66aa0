"""``collect``: results of one submission back into the input's order, in ``batch``'s output formats.

Results are replayed from the broker and journaled exactly like a ``batch`` job
(``<output>.partial/``): a row's first result wins and later copies of it are
skipped, so the output has each row once whatever the broker redelivered. An
interrupted collect resumes from its journal; the output (``.npy``/``.parquet``
for embed, ``.jsonl`` for generate, plus ``<output>.errors.jsonl``) is written by
the same writers as ``batch`` once every row has an outcome.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from ds_triton_client.jobs.journal import Journal, partial_dir
from ds_triton_client.jobs.reader import InputRow, read_rows
from ds_triton_client.jobs.runner import BatchSummary, check_output_suffix, file_sha256, write_outputs
from ds_triton_client.jobs.writer import errors_path
from ds_triton_client.queue.broker import ProducerBroker
from ds_triton_client.queue.job import InvalidJobError, JobResult, decode_embeddings
from ds_triton_client.queue.producer import RunSpec

log = logging.getLogger("ds_triton_client.queue")


class CollectTimeoutError(TimeoutError):
    """Not every row had a result in time; the journal keeps what arrived (rerun to resume)."""

    def __init__(self, missing: int, total: int, run_id: str) -> None:
        super().__init__(f"{missing} of {total} rows of run {run_id} have no result yet; "
                         "rerun the same collect to wait for the rest")  # fmt: skip
        self.missing = missing


@dataclass
class CollectStats:
    """What one collect saw on the result subject."""

    results: int = 0
    duplicates: int = 0
    foreign: int = 0


class _Placement:
    """Journals results in input order: one record per row, the first result of a row wins."""

    def __init__(self, journal: Journal, rows: Sequence[InputRow], done: dict[int, dict[str, Any]],
                 run_id: str, bar: tqdm[Any]) -> None:  # fmt: skip
        self.journal = journal
        self.total = len(rows)
        self.done = done
        self.run_id = run_id
        self.bar = bar
        self.dim = 0
        self.stats = CollectStats()

    @property
    def missing(self) -> int:
        return self.total - len(self.done)

    def add(self, payloads: Sequence[bytes]) -> None:
        """Journal a batch of results: embeddings of the whole batch as one part file."""
        part_rows: list[int] = []
        part_vectors: list[np.ndarray] = []
        for payload in payloads:
            placed = self._read(payload)
            if placed is None:
                continue
            result, first, count = placed
            self.stats.results += 1
            fresh = [r for r in range(first, first + count) if r not in self.done and r not in part_rows]
            if len(fresh) < count:
                self.stats.duplicates += 1
                if not fresh:
                    continue
            if result.error is not None:
                message = f"{result.error.type}: {result.error.message}"
                for row in fresh:
                    self.journal.add_error(row, message)
                    self.done[row] = {"error": message}
            elif result.task == "generate":
                generations = list((result.outputs or {}).get("generations") or [])
                for row in fresh:
                    self.journal.add_result(row, generations[row - first])
                    self.done[row] = {"result": generations[row - first]}
            else:
                matrix = decode_embeddings((result.outputs or {}).get("embeddings") or [])
                self.dim = self.dim or int(matrix.shape[1])
                part_rows += fresh
                part_vectors += [matrix[row - first] for row in fresh]
            self.bar.update(len(fresh))
        if part_rows:
            self.journal.add_part(part_rows, np.stack(part_vectors))
            for offset, row in enumerate(part_rows):
                self.done[row] = {"part": "", "offset": offset}
            self.bar.update(0)

    def _read(self, payload: bytes) -> tuple[JobResult, int, int] | None:
        """The result and the rows it answers, or None (logged) when it is not one of this run's."""
        try:
            result = JobResult.parse(payload)
        except InvalidJobError as exc:
            log.warning("skipping a message that is not a result: %s", exc)
            self.stats.foreign += 1
            return None
        meta = result.metadata
        first, count = meta.get("row"), meta.get("rows")
        if meta.get("run") != self.run_id or not isinstance(first, int) or not isinstance(count, int) or (
            first < 0 or count < 1 or first + count > self.total
        ):
            log.warning("skipping result %s: its metadata %s does not place it in run %s of %d rows",
                        result.id, dict(meta), self.run_id, self.total)  # fmt: skip
            self.stats.foreign += 1
            return None
        outputs = result.outputs or {}
        produced = len(outputs.get("embeddings") or outputs.get("generations") or [])
        if result.error is None and produced != count:
            log.warning("skipping result %s: %d outputs for %d rows", result.id, produced, count)
            self.stats.foreign += 1
            return None
        return result, first, count


async def collect(
    broker: ProducerBroker,
    input_path: Path,
    output: Path,
    spec: RunSpec,
    *,
    timeout_s: float | None = None,
    progress: bool = True,
) -> tuple[BatchSummary, CollectStats]:
    """Wait for every row's result of the submission ``spec`` of ``input_path``, then write ``output``.

    Args:
        broker: Connected to the queue the jobs were submitted to.
        input_path: The submitted file (rows are numbered as ``submit`` numbered them).
        output: ``.npy``/``.parquet`` (embed) or ``.jsonl`` (generate).
        spec: The same options ``submit`` was given (or its ``run_id``).
        timeout_s: Give up after this long without every result (None: wait).
        progress: Show a tqdm progress bar on stderr.

    Returns:
        The same summary ``batch`` gives, and what was seen on the result subject.

    Raises:
        CollectTimeoutError: ``timeout_s`` passed first (the journal keeps what arrived).
        JournalMismatchError: ``<output>.partial`` belongs to another job.
    """
    check_output_suffix(spec.task, output)
    rows = read_rows(input_path, spec.field)
    run_id = spec.resolve_run_id(input_path)
    identity = {"input_sha256": file_sha256(input_path), "rows": len(rows), "task": spec.task,
                "field": spec.field, "run": run_id}  # fmt: skip
    journal = Journal(partial_dir(output), identity)
    done = journal.open()
    resumed = len(done)
    subject = broker.names.result_subject(run_id)
    log.info("collecting run %s from %s", run_id, subject)
    give_up = time.monotonic() + timeout_s if timeout_s else None
    with tqdm(total=len(rows), initial=resumed, disable=not progress, unit="row", desc="collect") as bar:
        placement = _Placement(journal, rows, done, run_id, bar)
        for row in rows:  # rows submit could not read never became jobs
            if row.error is not None and row.index not in done:
                journal.add_error(row.index, row.error)
                done[row.index] = {"error": row.error}
                bar.update(1)
        if placement.missing:
            replay = broker.replay(subject)
            try:
                async for batch in replay:
                    placement.add(batch)
                    if not placement.missing:
                        break
                    if give_up is not None and time.monotonic() > give_up:
                        raise CollectTimeoutError(placement.missing, len(rows), run_id)
            finally:
                await replay.aclose()
    dim = placement.dim or _dim_from_journal(journal, done)
    failed = write_outputs(spec.task, output, rows, journal, dim)
    summary = BatchSummary(total=len(rows), succeeded=len(rows) - failed, failed=failed, resumed=resumed,
                           output=output, errors=errors_path(output) if failed else None)  # fmt: skip
    return summary, placement.stats


def _dim_from_journal(journal: Journal, done: dict[int, dict[str, Any]]) -> int:
    """The embedding size from a part written by an earlier run (a resumed collect saw no new vector)."""
    for record in done.values():
        if record.get("part"):
            return int(journal.load_part(record["part"]).shape[1])
    return 0
