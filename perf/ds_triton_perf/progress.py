"""A live progress bar for a load run (elapsed seconds, requests, rate, errors)."""

from __future__ import annotations

import sys
from typing import Any


class Progress:
    """Thin wrapper over ``tqdm`` that can be switched off (tests, CSV-only runs)."""

    def __init__(self, total_s: float, label: str, enabled: bool = True) -> None:
        self._bar: Any = None
        self._shown = 0.0
        if enabled:
            from tqdm import tqdm

            self._bar = tqdm(
                total=round(total_s, 1), desc=label, unit="s", file=sys.stderr, leave=False,
                bar_format="{desc}: {bar:20} {n:.0f}/{total:.0f}s {postfix}", dynamic_ncols=True,
            )

    def update(self, elapsed_s: float, done: int, errors: int, in_flight: int) -> None:
        if self._bar is None:
            return
        step = max(0.0, min(elapsed_s, float(self._bar.total)) - self._shown)
        self._shown += step
        rate = done / elapsed_s if elapsed_s > 0 else 0.0
        self._bar.set_postfix_str(f"{done} ok  {rate:.1f}/s  {errors} err  {in_flight} in flight")
        self._bar.update(step)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
