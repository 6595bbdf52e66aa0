"""Crash-safe progress record of a batch job: ``<output>.partial/journal.jsonl`` plus parts.

Every finished unit of work is appended as one JSON line and fsynced *after* any
data file it names has been written and renamed into place, so a job killed at
any instant resumes with exactly the rows whose results are on disk. A line cut
short by the kill is dropped on reopen; its rows simply run again.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

JOURNAL_NAME = "journal.jsonl"


class JournalMismatchError(Exception):
    """The partial job on disk was started for another input, task or model."""


def partial_dir(output: Path) -> Path:
    """Folder holding the journal of the job writing ``output``."""
    return output.with_name(output.name + ".partial")


def fsync_write(path: Path, data: bytes) -> None:
    """Write ``path`` atomically: temp file, fsync, rename."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


class Journal:
    """Append-only record of finished rows.

    Args:
        directory: The ``.partial`` folder (created on ``open``).
        identity: What the job is (input hash, row count, task, model); a journal
            for a different identity is refused instead of mixing results.
    """

    def __init__(self, directory: Path, identity: dict[str, Any]) -> None:
        self.directory = directory
        self.identity = identity
        self._path = directory / JOURNAL_NAME
        self._parts = directory / "parts"

    def open(self) -> dict[int, dict[str, Any]]:
        """Create or reopen the journal; return the latest record of each finished row.

        A row record is ``{"error": msg}``, ``{"result": {...}}`` or
        ``{"part": name, "offset": k}`` (row k of an embeddings part file).

        Raises:
            JournalMismatchError: The journal belongs to another job.
        """
        self._parts.mkdir(parents=True, exist_ok=True)
        if not self._path.exists() or self._path.stat().st_size == 0:
            self._append_line({"journal": self.identity})
            return {}
        raw = self._path.read_bytes()
        complete = raw[: raw.rfind(b"\n") + 1]
        if len(complete) != len(raw):
            # The last line was cut by the interruption: forget it, its rows run again.
            with open(self._path, "r+b") as handle:
                handle.truncate(len(complete))
        lines = [json.loads(line) for line in complete.decode("utf-8").splitlines() if line.strip()]
        if not lines or lines[0].get("journal") != self.identity:
            found = lines[0].get("journal") if lines else None
            raise JournalMismatchError(
                f"{self.directory} belongs to another job ({found}); expected {self.identity}. "
                "Delete it to start over."
            )
        done: dict[int, dict[str, Any]] = {}
        for record in lines[1:]:
            if "rows" in record:
                for offset, row in enumerate(record["rows"]):
                    done[int(row)] = {"part": record["part"], "offset": offset}
            elif "row" in record:
                done[int(record["row"])] = {k: v for k, v in record.items() if k != "row"}
        return done

    def add_part(self, rows: list[int], array: np.ndarray) -> None:
        """Store embeddings of ``rows`` (in that order), then journal them."""
        name = f"part-{rows[0]:09d}-{len(rows)}.npy"
        with open(self._parts / (name + ".tmp"), "wb") as handle:
            np.save(handle, np.ascontiguousarray(array, dtype=np.float32))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(self._parts / (name + ".tmp"), self._parts / name)
        self._append_line({"rows": rows, "part": name})

    def add_result(self, row: int, result: dict[str, Any]) -> None:
        self._append_line({"row": row, "result": result})

    def add_error(self, row: int, error: str) -> None:
        self._append_line({"row": row, "error": error})

    def load_part(self, name: str) -> np.ndarray:
        return np.asarray(np.load(self._parts / name, allow_pickle=False))

    def remove(self) -> None:
        """Delete the journal and its parts (after the final output is written)."""
        shutil.rmtree(self.directory, ignore_errors=True)

    def _append_line(self, record: dict[str, Any]) -> None:
        with open(self._path, "ab") as handle:
            handle.write(json.dumps(record, ensure_ascii=False).encode("utf-8") + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
