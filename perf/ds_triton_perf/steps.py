"""Progress lines for a bench run: step counter, elapsed time, one detail line per result."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class StepLog:
    """Prints ``[  12s] #3 what is running`` lines as a bench advances."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stderr
        self._start = time.monotonic()
        self._count = 0

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self._start

    def step(self, message: str) -> None:
        self._count += 1
        print(f"[{self.elapsed_s:5.0f}s] #{self._count} {message}", file=self._stream, flush=True)

    def detail(self, message: str) -> None:
        print(f"          -> {message}", file=self._stream, flush=True)
