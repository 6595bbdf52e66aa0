"""The server's step timeline, read back for the report.

With ``DS_TRITON_PROFILE_DIR`` set (the bench sets it for a server it starts),
every model instance appends one JSON line per step to
``<dir>/<model>.<instance>.steps.jsonl`` (``ds_triton.profiling``). Keys:
``t`` (unix seconds, when the step's forward passes ended), ``phase``
(``prefill``/``decode``/``mixed``/``embed``), ``rows``, ``tokens`` (processed,
padding included), ``forward_ms``, ``gap_ms`` (time since the previous step's
forwards ended not spent in a forward: scheduling, sampling, sending, idling)
and ``queue_depth``.

The bench cuts the timeline into the windows of its runs, which gives the
per-run step statistics (time per decode step, tokens per step, the share of
time between forwards) that the report's time breakdown shows.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROFILE_ENV = "DS_TRITON_PROFILE_DIR"
PREFILL_PHASES = ("prefill", "mixed")
# A gap longer than this is the engine idling between runs, not time lost between steps.
IDLE_GAP_MS = 1000.0


@dataclass(frozen=True)
class Step:
    """One forward pass of one model instance."""

    t: float
    phase: str
    rows: int
    tokens: int
    forward_ms: float
    gap_ms: float
    queue_depth: int
    instance: str = ""

    @property
    def start(self) -> float:
        """When the step's forward passes started (``t`` is when they ended)."""
        return self.t - self.forward_ms / 1000.0


@dataclass(frozen=True)
class StepStats:
    """Steps inside one window (means in ms; ``None`` when the window had none of that kind)."""

    steps: int
    steps_by_phase: dict[str, int]
    forward_ms_by_phase: dict[str, float]
    decode_step_ms: float | None
    decode_gap_ms: float | None
    decode_gap_share: float | None
    decode_rows: float | None
    tokens_per_step: float | None
    prefill_ms: float | None
    max_queue_depth: int

    def to_dict(self) -> dict[str, Any]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in vars(self).items()}


def read_steps(profile_dir: Path, model: str) -> list[Step]:
    """Every step of every instance of ``model`` in ``profile_dir``, in time order.

    Lines that are not complete JSON records (a file still being written) are skipped.
    """
    steps: list[Step] = []
    for path in sorted(profile_dir.glob(f"{model}.*.steps.jsonl")):
        instance = path.name[len(model) + 1:-len(".steps.jsonl")]
        with path.open() as handle:
            for line in handle:
                step = _parse(line, instance)
                if step is not None:
                    steps.append(step)
    steps.sort(key=lambda s: s.t)
    return steps


def window(steps: Sequence[Step], start: float, end: float) -> list[Step]:
    """Steps that ended in ``[start, end)``."""
    return [s for s in steps if start <= s.t < end]


def step_stats(steps: Iterable[Step]) -> StepStats | None:
    """Summary of the steps in a window (``None`` for an empty window)."""
    items = list(steps)
    if not items:
        return None
    by_phase: dict[str, list[Step]] = {}
    for step in items:
        by_phase.setdefault(step.phase, []).append(step)
    decode = by_phase.get("decode", [])
    busy = [s for s in decode if s.gap_ms < IDLE_GAP_MS]
    forward = sum(s.forward_ms for s in busy)
    gaps = sum(s.gap_ms for s in busy)
    prefill = [s for s in items if s.phase in PREFILL_PHASES]
    return StepStats(
        steps=len(items),
        steps_by_phase={phase: len(group) for phase, group in sorted(by_phase.items())},
        forward_ms_by_phase={phase: _mean(s.forward_ms for s in group)
                             for phase, group in sorted(by_phase.items())},
        decode_step_ms=(forward + gaps) / len(busy) if busy else None,
        decode_gap_ms=gaps / len(busy) if busy else None,
        decode_gap_share=gaps / (forward + gaps) if busy and forward + gaps > 0 else None,
        decode_rows=_mean(s.rows for s in decode) if decode else None,
        tokens_per_step=sum(s.tokens for s in items) / len(items),
        prefill_ms=_mean(s.forward_ms for s in prefill) if prefill else None,
        max_queue_depth=max(s.queue_depth for s in items),
    )


def _parse(line: str, instance: str) -> Step | None:
    try:
        raw = json.loads(line)
        return Step(t=float(raw["t"]), phase=str(raw["phase"]), rows=int(raw["rows"]),
                    tokens=int(raw["tokens"]), forward_ms=float(raw["forward_ms"]),
                    gap_ms=float(raw["gap_ms"]), queue_depth=int(raw.get("queue_depth", 0)),
                    instance=instance)
    except (ValueError, KeyError, TypeError):
        return None


def _mean(values: Iterable[float]) -> float:
    items = list(values)
    return sum(items) / len(items) if items else math.nan
