"""Everything a tune run was asked to do, saved in its folder so ``--resume`` repeats it exactly."""

from __future__ import annotations

import dataclasses
import json
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ds_triton_perf.tuning.drivers import Driver
from ds_triton_perf.tuning.measurement import Fidelity
from ds_triton_perf.tuning.objective import Objective
from ds_triton_perf.tuning.space import Value

OPTIONS_FILE = "options.json"
RunMode = Literal["brute", "quick", "compare"]
_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s?)?$")


def parse_duration(text: str) -> float:
    """``10m``, ``90s``, ``1h30m`` or plain seconds → seconds."""
    match = _DURATION.match(text.strip())
    if not text.strip() or not match or not any(match.groups()):
        raise ValueError(f"not a duration: {text!r} (use e.g. 10m, 90s, 1h30m)")
    hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    total = hours * 3600 + minutes * 60 + seconds
    if total <= 0:
        raise ValueError(f"a duration must be positive: {text!r}")
    return total


@dataclass
class TuneOptions:
    """A tune run's inputs (see ``ds-triton tune --help`` for each)."""

    model: str
    repository: Path
    mode: RunMode = "quick"
    objective: Objective = field(default_factory=lambda: Objective("throughput"))
    budget_s: float | None = None
    fidelity: Fidelity = field(default_factory=lambda: Fidelity("full", 2.0, 3, 8, 0.05))
    driver: Driver = "loadgen"
    requests: Path | None = None
    texts: str | None = None
    request_batch: int = 1
    set_values: dict[str, list[Value]] = field(default_factory=dict)
    max_concurrency: int = 64
    validate_top: int = 5
    ceiling: bool = False
    require_bars: bool = False
    command: str = field(default_factory=lambda: shlex.join(["ds-triton", *sys.argv[1:]]))

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["repository"] = str(self.repository)
        data["requests"] = str(self.requests) if self.requests else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TuneOptions:
        data = dict(data)
        data["repository"] = Path(data["repository"])
        data["requests"] = Path(data["requests"]) if data.get("requests") else None
        data["objective"] = Objective(**data["objective"])
        data["fidelity"] = Fidelity(**data["fidelity"])
        return cls(**data)

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / OPTIONS_FILE).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, folder: Path) -> TuneOptions:
        path = folder / OPTIONS_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{folder} is not a tune run folder (no {OPTIONS_FILE})")
        return cls.from_dict(json.loads(path.read_text()))
