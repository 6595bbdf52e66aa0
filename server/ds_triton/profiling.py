"""Step timeline: one JSON line per forward step of a model instance, for profiling.

Enabled by ``$DS_TRITON_PROFILE_DIR`` (the folder to write to) or by
``"profile": true`` in ``model.json`` (then the folder is ``$DS_TRITON_PROFILE_DIR``
if set, else ``<temp dir>/ds_triton_profile``). Each instance appends to
``<folder>/<model>.<instance>.steps.jsonl`` records with these keys:

``t``
    Unix time (seconds) when the step's last forward pass ended.
``phase``
    ``prefill``, ``decode``, ``mixed`` (a prefill and a decode forward in one step)
    or ``embed``.
``rows``
    Sequences (or texts) the step's forward passes ran over.
``tokens``
    Tokens those forward passes processed (padding included).
``forward_ms``
    Time inside forward passes in this step.
``gap_ms``
    Time since the previous step's last forward pass ended that was not spent in
    a forward pass: scheduling, sampling, sending, and idle waiting for work.
``queue_depth``
    Requests waiting for admission when the step ended.

Recording only appends a tuple to a list; a background thread turns the records
into JSON and writes them about once a second, so the hot loop never formats or
does I/O. When profiling is off, ``open_timeline`` returns ``None`` and callers
skip recording altogether.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Literal

LOG = logging.getLogger(__name__)

PROFILE_DIR_ENV = "DS_TRITON_PROFILE_DIR"
DEFAULT_SUBDIR = "ds_triton_profile"
FLUSH_SECONDS = 1.0
KEYS: tuple[str, ...] = ("t", "phase", "rows", "tokens", "forward_ms", "gap_ms", "queue_depth")

Phase = Literal["prefill", "decode", "mixed", "embed"]
_Record = tuple[float, str, int, int, float, float, int]


def timeline_path(model: str, instance: str, directory: Path) -> Path:
    """Where ``instance`` of ``model`` writes its records."""
    return directory / f"{model}.{instance}.steps.jsonl"


def profile_directory(profile: bool, environ: dict[str, str] | None = None) -> Path | None:
    """The folder to write timelines to, or None when profiling is off."""
    env = os.environ if environ is None else environ
    configured = env.get(PROFILE_DIR_ENV, "").strip()
    if configured:
        return Path(configured)
    if profile:
        return Path(tempfile.gettempdir()) / DEFAULT_SUBDIR
    return None


def open_timeline(model: str, instance: str, profile: bool = False) -> StepTimeline | None:
    """A started timeline for this instance, or None when profiling is off."""
    directory = profile_directory(profile)
    if directory is None:
        return None
    path = timeline_path(model, instance, directory)
    timeline = StepTimeline(path)
    LOG.info("%s: step timeline -> %s", instance, path)
    return timeline


class StepTimeline:
    """Buffers step records and appends them to a JSON-lines file from its own thread."""

    def __init__(self, path: Path, flush_seconds: float = FLUSH_SECONDS) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("a", encoding="utf-8")
        self._records: list[_Record] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._flush_seconds = flush_seconds
        self._last_end: float | None = None
        self._writer = threading.Thread(target=self._write_loop, name="step-timeline", daemon=True)
        self._writer.start()

    def record(
        self,
        phase: Phase,
        rows: int,
        tokens: int,
        ended: float,
        forward_seconds: float,
        queue_depth: int = 0,
    ) -> None:
        """Record one step whose forward passes took ``forward_seconds`` and ended at ``ended``.

        ``ended`` is a ``time.perf_counter()`` reading; the gap is measured from the
        previous record's ``ended``.
        """
        previous, self._last_end = self._last_end, ended
        gap = 0.0 if previous is None else max(0.0, ended - previous - forward_seconds)
        record = (time.time(), phase, rows, tokens, forward_seconds * 1e3, gap * 1e3, queue_depth)
        with self._lock:
            self._records.append(record)

    def flush(self) -> None:
        """Write what is buffered now."""
        with self._lock:
            records, self._records = self._records, []
        if not records or self._file.closed:
            return
        lines = [json.dumps(dict(zip(KEYS, _rounded(r), strict=True))) + "\n" for r in records]
        self._file.writelines(lines)
        self._file.flush()

    def close(self) -> None:
        """Stop the writer thread and write the rest (idempotent)."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._writer.join()
        self.flush()
        self._file.close()

    def _write_loop(self) -> None:
        while not self._closed.wait(self._flush_seconds):
            try:
                self.flush()
            except OSError:  # a full disk must not take serving down; profiling is best effort
                LOG.exception("could not write the step timeline to %s", self.path)


def _rounded(record: _Record) -> tuple[float, str, int, int, float, float, int]:
    t, phase, rows, tokens, forward_ms, gap_ms, queue_depth = record
    return round(t, 6), phase, rows, tokens, round(forward_ms, 4), round(gap_ms, 4), queue_depth
