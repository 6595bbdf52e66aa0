"""Snapshots of a server's statistics around a run, tolerant of servers that refuse them."""

from __future__ import annotations

import urllib.error

from ds_triton_perf.systems import ServerUrls
from ds_triton_perf.triton_stats import ServerBreakdown, StatsSnapshot, diff, snapshot


class StatsProbe:
    """Takes before/after snapshots; a server that refuses (PyTriton: 403) is noted once."""

    def __init__(self, notes: list[str]) -> None:
        self._notes = notes

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
        now = self.before(urls, model)
        return diff(before, now) if now is not None else None
