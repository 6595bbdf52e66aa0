"""One failed point is a note in the report, not the end of the run; a run has a time budget.

A benchmark that dies at minute 25 on one peer that would not start, one
perf_analyzer crash or one kind's bug leaves nothing to read. Every point
(a sweep level, a peer, a perf_analyzer run, a scenario kind) runs through
:meth:`Guard.run`: an exception becomes a note naming the point (the
traceback goes to ``errors.log`` in the results folder) and the run goes on.
Once the budget is spent, points that have not started are skipped, each with
a note, so the report is still written within the budget.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ds_triton_perf.steps import StepLog


class Guard:
    """Runs the points of a bench run: failures become notes, the time budget skips the rest.

    Args:
        notes: The run's notes (``BenchResults.notes``); failures and skips are appended.
        log: Progress lines.
        budget_s: Seconds from now after which no new point starts (None: no limit).
        errors_path: Where full tracebacks are appended (None: not kept).
    """

    def __init__(self, notes: list[str], log: StepLog, budget_s: float | None = None,
                 errors_path: Path | None = None) -> None:
        self._notes = notes
        self._log = log
        self._budget_s = budget_s
        self._deadline = None if budget_s is None else time.monotonic() + budget_s
        self._errors_path = errors_path
        self.failed: list[str] = []
        self.skipped: list[str] = []

    @property
    def deadline(self) -> float | None:
        """``time.monotonic()`` value after which no point starts (None: no limit)."""
        return self._deadline

    def remaining_s(self) -> float | None:
        return None if self._deadline is None else self._deadline - time.monotonic()

    def expired(self) -> bool:
        remaining = self.remaining_s()
        return remaining is not None and remaining <= 0

    def run(self, label: str, action: Callable[..., object], *args: Any, budgeted: bool = True) -> bool:
        """Run ``action(*args)`` unless the budget is spent; True when it ran to the end.

        ``budgeted=False`` runs it whatever the time (the analysis and the report).
        """
        if budgeted and self.expired():
            self.skipped.append(label)
            self._notes.append(f"{label}: skipped, the run's time budget "
                               f"({(self._budget_s or 0) / 60:.0f} min) was spent")
            self._log.detail(f"skipped (time budget spent): {label}")
            return False
        try:
            action(*args)
        except Exception as exc:  # one point's failure is data; the run goes on
            self.failed.append(label)
            lines = str(exc).strip().splitlines()
            reason = f"{type(exc).__name__}: {lines[-1][:300] if lines else ''}"
            self._notes.append(f"{label}: failed, {reason}")
            self._log.detail(f"FAILED {label}: {reason}")
            if self._errors_path is not None:
                with self._errors_path.open("a") as handle:
                    handle.write(f"== {label}\n{traceback.format_exc()}\n")
            return False
        return True
