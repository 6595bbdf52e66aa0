"""Run a batch job: pending rows → bounded concurrent calls → journal → ordered outputs.

Embedding rows go in chunks (one request each); a chunk the server rejects as
invalid is retried row by row so only the bad rows fail. Generation rows go one
request each. Every outcome is journaled before it counts, so an interrupted
job rerun with the same arguments continues where it stopped.
"""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
from tqdm import tqdm

from ds_triton_client.codec import EMBED_OUTPUT, GenerationResult
from ds_triton_client.concurrency import gather_bounded
from ds_triton_client.errors import ClientError, InvalidInputError
from ds_triton_client.jobs.journal import Journal, partial_dir
from ds_triton_client.jobs.reader import InputRow, read_rows
from ds_triton_client.jobs.writer import (
    EMBED_SUFFIXES,
    GENERATE_SUFFIXES,
    embeddings_matrix,
    errors_path,
    write_embeddings,
    write_errors,
    write_generations,
)
from ds_triton_client.model_info import ModelInfo

Task = Literal["embed", "generate"]


class BatchClient(Protocol):
    """What the runner needs of ``AsyncClient`` (a fake in unit tests)."""

    async def model_info(self, model: str, timeout: float | None = None) -> ModelInfo: ...
    async def embed(
        self, texts: Sequence[str], model: str = ..., timeout: float | None = None
    ) -> np.ndarray: ...
    async def generate(
        self, prompt: str, model: str = ..., timeout: float | None = None, **sampling: Any
    ) -> GenerationResult: ...


@dataclass
class BatchSummary:
    """Outcome of one run of a batch job."""

    total: int
    succeeded: int
    failed: int
    resumed: int
    output: Path
    errors: Path | None

    def as_dict(self) -> dict[str, object]:
        return {
            "total": self.total,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "resumed_from_journal": self.resumed,
            "output": str(self.output),
            "errors": str(self.errors) if self.errors else None,
        }


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_output_suffix(task: Task, output: Path) -> None:
    """Refuse an output the job could not write, before any request is sent."""
    allowed = EMBED_SUFFIXES if task == "embed" else GENERATE_SUFFIXES
    if output.suffix.lower() not in allowed:
        raise ValueError(f"{task} output must end with {' or '.join(allowed)}, got {output.name}")
    if output.suffix.lower() == ".parquet" and importlib.util.find_spec("pyarrow") is None:
        raise ValueError("writing .parquet needs pyarrow: pip install 'ds-triton-client[parquet]'")


class _Job:
    """State of one run; ``units`` is consumed by a fixed number of workers."""

    def __init__(
        self,
        client: BatchClient,
        task: Task,
        model: str,
        journal: Journal,
        sampling: Mapping[str, Any],
        progress: tqdm[Any],
    ) -> None:
        self.client = client
        self.task = task
        self.model = model
        self.journal = journal
        self.sampling = dict(sampling)
        self.progress = progress
        self.done: dict[int, dict[str, Any]] = {}

    def _fail(self, rows: Sequence[InputRow], error: str) -> None:
        for row in rows:
            self.journal.add_error(row.index, error)
            self.done[row.index] = {"error": error}
        self.progress.update(len(rows))

    async def embed(self, rows: Sequence[InputRow]) -> None:
        texts = [str(r.text) for r in rows]
        try:
            vectors = await self.client.embed(texts, model=self.model)
        except InvalidInputError as exc:
            if len(rows) == 1:
                self._fail(rows, str(exc))
                return
            for row in rows:  # isolate the bad rows; the others still succeed
                await self.embed([row])
            return
        except ClientError as exc:
            self._fail(rows, str(exc))
            return
        indices = [r.index for r in rows]
        self.journal.add_part(indices, vectors)
        for offset, index in enumerate(indices):
            self.done[index] = {"part": "", "offset": offset}
        self.progress.update(len(rows))

    async def generate(self, rows: Sequence[InputRow]) -> None:
        (row,) = rows
        try:
            result = await self.client.generate(str(row.text), model=self.model, **self.sampling)
        except ClientError as exc:
            self._fail(rows, str(exc))
            return
        self.journal.add_result(row.index, result.as_dict())
        self.done[row.index] = {"result": result.as_dict()}
        self.progress.update(1)

    async def run(self, units: list[list[InputRow]], concurrency: int) -> None:
        handler = self.embed if self.task == "embed" else self.generate
        await gather_bounded(handler, units, concurrency)


async def run_batch(
    client: BatchClient,
    task: Task,
    input_path: Path,
    output: Path,
    *,
    model: str,
    field: str | None = None,
    concurrency: int = 4,
    chunk_size: int | None = None,
    sampling: Mapping[str, Any] | None = None,
    retry_failed: bool = False,
    progress: bool = True,
) -> BatchSummary:
    """Run (or resume) the job turning ``input_path`` into ``output``.

    Args:
        client: An ``AsyncClient`` (or anything with its ``embed``/``generate``/``model_info``).
        task: ``embed`` (output ``.npy``/``.parquet``) or ``generate`` (output ``.jsonl``).
        input_path: ``.jsonl``/``.ndjson``/``.csv`` of texts or prompts.
        output: The result file; ``<output>.partial/`` holds progress until it is written
            (and stays while rows have failed, for ``retry_failed``).
        model: Model name.
        field: JSON field / CSV column with the text (default ``text``, else ``prompt``).
        concurrency: Requests in flight.
        chunk_size: Rows per embedding request (default: the model's max batch size).
        sampling: Generation parameters (max_tokens, temperature, ...).
        retry_failed: On resume, run rows that failed before again.
        progress: Show a tqdm progress bar on stderr.

    Returns:
        Counts, and where the outputs and the failed rows are.

    Raises:
        JournalMismatchError: ``<output>.partial`` belongs to another job.
        ValueError: Bad suffix, unreadable input, bad arguments.
    """
    check_output_suffix(task, output)
    if concurrency < 1:
        raise ValueError("concurrency must be >= 1")
    rows = read_rows(input_path, field)
    identity = _job_identity(input_path, rows, task, model, field, sampling)
    journal = Journal(partial_dir(output), identity)
    done = journal.open()
    if retry_failed:
        done = {i: r for i, r in done.items() if "error" not in r}
    resumed = len(done)
    with tqdm(total=len(rows), initial=resumed, disable=not progress, unit="row", desc=task) as bar:
        job = _Job(client, task, model, journal, sampling or {}, bar)
        for row in rows:
            if row.error is not None and row.index not in done:
                job._fail([row], str(row.error))
        pending = [r for r in rows if r.error is None and r.index not in done]
        units, dim = await _plan_units(client, task, model, pending, chunk_size)
        await job.run(units, concurrency)
    failed = write_outputs(task, output, rows, journal, dim)
    return BatchSummary(
        total=len(rows),
        succeeded=len(rows) - failed,
        failed=failed,
        resumed=resumed,
        output=output,
        errors=errors_path(output) if failed else None,
    )


def _job_identity(
    input_path: Path,
    rows: Sequence[InputRow],
    task: Task,
    model: str,
    field: str | None,
    sampling: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """What makes two runs the same job (a journal of another job must not be resumed)."""
    return {
        "input_sha256": file_sha256(input_path),
        "rows": len(rows),
        "task": task,
        "model": model,
        "field": field,
        "sampling": dict(sampling or {}),
    }


async def _plan_units(
    client: BatchClient, task: Task, model: str, pending: list[InputRow], chunk_size: int | None
) -> tuple[list[list[InputRow]], int]:
    """Rows grouped per request (embedding chunks, one prompt per generation), and the embedding dim."""
    if task != "embed":
        return [[r] for r in pending], 0
    info = await client.model_info(model)
    size = chunk_size or info.rows_per_request
    dim = info.output_dims.get(EMBED_OUTPUT, (0,))[-1]
    return [pending[i : i + size] for i in range(0, len(pending), size)], dim


def write_outputs(task: Task, output: Path, rows: Sequence[InputRow], journal: Journal, dim: int) -> int:
    """Write the output (and errors) file from the journal; returns the number of failed rows."""
    # Re-read the journal: it is the single source of truth for what finished.
    final = journal.open()
    missing = [r.index for r in rows if r.index not in final]
    if missing:
        raise RuntimeError(f"rows {missing[:10]} have no journaled outcome")
    if task == "embed":
        write_embeddings(output, rows, embeddings_matrix(rows, final, journal, dim))
    else:
        write_generations(output, rows, final)
    failed = write_errors(output, rows, final)
    if not failed:
        journal.remove()  # kept otherwise, so `retry_failed` can redo just the failed rows
    return failed
