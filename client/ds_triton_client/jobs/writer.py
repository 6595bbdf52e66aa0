"""Final outputs of a batch job, one entry per input row in input order, written atomically."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ds_triton_client.jobs.journal import Journal, fsync_write
from ds_triton_client.jobs.reader import InputRow

EMBED_SUFFIXES = (".npy", ".parquet")
GENERATE_SUFFIXES = (".jsonl",)


def errors_path(output: Path) -> Path:
    """Where failed rows of the job writing ``output`` are reported."""
    return output.with_name(output.name + ".errors.jsonl")


def embeddings_matrix(
    rows: Sequence[InputRow], done: dict[int, dict[str, Any]], journal: Journal, dim: int
) -> np.ndarray:
    """(n, dim) float32 in row order; rows that failed are NaN."""
    matrix = np.full((len(rows), dim), np.nan, dtype=np.float32)
    cache: dict[str, np.ndarray] = {}
    for row in rows:
        record = done[row.index]
        if "part" in record:
            part = cache.get(record["part"])
            if part is None:
                part = cache[record["part"]] = journal.load_part(record["part"])
            matrix[row.index] = part[record["offset"]]
    return matrix


def write_embeddings(output: Path, rows: Sequence[InputRow], matrix: np.ndarray) -> None:
    """``.npy``: the matrix. ``.parquet``: columns row, text, embedding (null where failed)."""
    if output.suffix.lower() == ".npy":
        buffer = io.BytesIO()
        np.save(buffer, matrix)
        fsync_write(output, buffer.getvalue())
        return
    import pyarrow as pa
    import pyarrow.parquet as pq

    failed = np.isnan(matrix).any(axis=1) if matrix.size else np.zeros(len(rows), dtype=bool)
    # A variable-size list: Parquet cannot store null entries of fixed-size lists.
    lengths = np.where(failed, 0, matrix.shape[1])
    offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))
    values = pa.array(matrix[~failed].reshape(-1), type=pa.float32())
    embeddings = pa.ListArray.from_arrays(offsets, values, mask=pa.array(failed))
    table = pa.table(
        {
            "row": pa.array([r.index for r in rows], type=pa.int64()),
            "text": pa.array([r.text for r in rows], type=pa.string()),
            "embedding": embeddings,
        }
    )
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    fsync_write(output, buffer.getvalue())


def write_generations(output: Path, rows: Sequence[InputRow], done: dict[int, dict[str, Any]]) -> None:
    """One JSON line per row: row, prompt, the result fields, and ``error`` (null when it worked)."""
    lines = []
    for row in rows:
        record = done[row.index]
        result = record.get("result") or {"text": None}
        entry = {"row": row.index, "prompt": row.text, **result, "error": record.get("error")}
        lines.append(json.dumps(entry, ensure_ascii=False))
    fsync_write(output, ("\n".join(lines) + "\n").encode("utf-8") if lines else b"")


def write_errors(output: Path, rows: Sequence[InputRow], done: dict[int, dict[str, Any]]) -> int:
    """Write the failed-rows file (or remove a stale one); return how many rows failed."""
    path = errors_path(output)
    failed = [
        json.dumps({"row": r.index, "input": r.text, "error": done[r.index]["error"]}, ensure_ascii=False)
        for r in rows
        if "error" in done[r.index]
    ]
    if failed:
        fsync_write(path, ("\n".join(failed) + "\n").encode("utf-8"))
    else:
        path.unlink(missing_ok=True)
    return len(failed)
