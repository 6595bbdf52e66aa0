"""Input rows from JSONL or CSV files, numbered in file order.

A JSONL line is either a JSON string or an object holding the text in ``field``
(default: ``text``, else ``prompt``). A CSV file has a header row naming the
column. A row that cannot be read becomes an ``InputRow`` with ``error`` set, so
it is reported in the failed-rows file instead of stopping the job or vanishing.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

DEFAULT_FIELDS = ("text", "prompt")


@dataclass(frozen=True)
class InputRow:
    """One input: its 0-based position among the file's rows, and its text or read error."""

    index: int
    text: str | None
    error: str | None = None


def _pick(record: dict[str, object], index: int, field: str | None, where: str) -> InputRow:
    names = (field,) if field else DEFAULT_FIELDS
    for name in names:
        if name in record:
            value = record[name]
            if isinstance(value, str) and value:
                return InputRow(index, value)
            return InputRow(index, None, f"{where}: field {name!r} must be a non-empty string")
    return InputRow(index, None, f"{where}: no field {' or '.join(repr(n) for n in names)}")


def read_jsonl(path: Path, field: str | None = None) -> list[InputRow]:
    """Rows of a JSONL file; blank lines are not rows."""
    rows: list[InputRow] = []
    with open(path, encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"line {line_number}"
            index = len(rows)
            try:
                value = json.loads(line)
            except ValueError as exc:
                rows.append(InputRow(index, None, f"{where}: invalid JSON ({exc})"))
            else:
                if isinstance(value, str):
                    value = {"text": value}
                    rows.append(_pick(value, index, "text", where))
                elif isinstance(value, dict):
                    rows.append(_pick(value, index, field, where))
                else:
                    rows.append(InputRow(index, None, f"{where}: expected a string or an object"))
    return rows


def read_csv(path: Path, field: str | None = None) -> list[InputRow]:
    """Rows of a CSV file with a header row."""
    rows: list[InputRow] = []
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        names = (field,) if field else DEFAULT_FIELDS
        column = next((n for n in names if n in header), None)
        if column is None:
            raise ValueError(f"{path}: CSV header {header} has no column {' or '.join(names)}")
        for record in reader:
            index = len(rows)
            value = record.get(column)
            if value:
                rows.append(InputRow(index, value))
            else:
                rows.append(InputRow(index, None, f"line {reader.line_num}: empty {column!r}"))
    return rows


def read_rows(path: Path, field: str | None = None) -> list[InputRow]:
    """Rows of ``path`` by extension: ``.jsonl``/``.ndjson`` or ``.csv``.

    Raises:
        ValueError: Unknown extension, or a CSV without the text column.
    """
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return read_jsonl(path, field)
    if suffix == ".csv":
        return read_csv(path, field)
    raise ValueError(f"{path}: input must be .jsonl, .ndjson or .csv")
