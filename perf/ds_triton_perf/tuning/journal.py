"""The checkpoint of a search: every finished measurement, one JSON line each, fsynced.

A search is deterministic given its measurements, so resuming is replaying:
the search runs again from the start and every measurement it asks for that
the journal holds is returned from it (its cost still counts against the
budget) until the journal runs out, and the search goes on live from there.
A measurement cut short by Ctrl-C was never written, so it runs again.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ds_triton_perf.tuning.measurement import Measurement


class Journal:
    """Measurements by ``(candidate key, fidelity)``, kept in a JSON-lines file (or in memory)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._entries: dict[tuple[str, str], Measurement] = {}
        if path is not None and path.is_file():
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    measurement = Measurement.from_dict(json.loads(line))
                except (ValueError, TypeError) as exc:
                    if number == len(path.read_text().splitlines()):
                        break  # the last line was cut short by a crash: measure it again
                    raise ValueError(f"{path}:{number}: not a measurement: {exc}") from None
                self._entries[(measurement.candidate, measurement.fidelity)] = measurement

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, candidate: str, fidelity: str) -> Measurement | None:
        return self._entries.get((candidate, fidelity))

    def add(self, measurement: Measurement) -> None:
        self._entries[(measurement.candidate, measurement.fidelity)] = measurement
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as handle:
            handle.write(json.dumps(measurement.to_dict()) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def measurements(self) -> list[Measurement]:
        return list(self._entries.values())
