"""Snapshots of a server's statistics around a run, tolerant of servers that refuse them."""

from __future__ import annotations

import time
import urllib.error

from ds_triton_perf.systems import ServerUrls
from ds_triton_perf.triton_stats import ServerBreakdown, StatsSnapshot, diff, snapshot


class StatsProbe:
    """Takes before/after snapshots; a server that refuses (PyTriton: 403) is noted once.

    ``settle_s`` waits before the "after" snapshot, for servers that publish metrics
    from a background thread at an interval.
    """

    def __init__(self, notes: list[str], settle_s: float = 0.0) -> None:
        self._notes = notes
        self._settle_s = settle_s

    def before(self, urls: ServerUrls | None, model: str) -> StatsSnapshot | None:
        if urls is None:
            return None
        try:
            return snapshot(urls.http, urls.metrics, model)
        except (urllib.error.URLError, OSError, KeyError, ValueError) as exc:
            note = f"statistics of {model} at {urls.http} unavailable: {exc}"
            if note not in self._notes:
                self._notes.append(note)
            return None

    def after(self, before: StatsSnapshot | None, urls: ServerUrls | None,
              model: str) -> ServerBreakdown | None:
        if before is None:
            return None
        time.sleep(self._settle_s)
        now = self.before(urls, model)
        return diff(before, now) if now is not None else None
