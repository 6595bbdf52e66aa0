"""The generation engine's own metrics over one run, read from a Prometheus diff.

For a decoupled model Triton's statistics say little: every execution has
batch size 1 and ``compute_infer`` is only the hand-off of the request to the
engine. The real batching happens in the engine, which publishes
``ds_triton_generation_*`` metrics; the bench diffs them around each run
(:func:`ds_triton_perf.triton_stats.diff`) and this module reads the diff:
the decode-batch occupancy distribution, time to first token as the engine
sees it, and generated tokens per forward pass.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

PREFIX = "ds_triton_generation_"
OCCUPANCY = PREFIX + "batch_occupancy"
TTFT = PREFIX + "time_to_first_token_seconds"
TOKENS = PREFIX + "tokens_total"
FORWARD = PREFIX + "forward_passes_total"
_LE = re.compile(r"le=([^,}]+)")
_PHASE = re.compile(r"phase=([^,}]+)")


@dataclass(frozen=True)
class EngineRun:
    """What the engine did during one run.

    Attributes:
        occupancy: Decode steps per occupancy bucket (label → count), in bucket order;
            labels are sequence counts (``"1"``, ``"3–4"``, ``"> 256"``).
        occupancy_mean: Mean sequences per decode step.
        decode_steps: Decode forward passes.
        forward_passes: Forward passes by phase.
        tokens: Tokens generated.
        ttft_ms: Mean engine-side time to first token (arrival at the engine → first token).
        first_tokens: Sequences that got their first token.
    """

    occupancy: dict[str, int] = field(default_factory=dict)
    occupancy_mean: float | None = None
    decode_steps: int = 0
    forward_passes: dict[str, int] = field(default_factory=dict)
    tokens: int = 0
    ttft_ms: float | None = None
    first_tokens: int = 0

    @property
    def tokens_per_step(self) -> float | None:
        """Generated tokens per forward pass (all phases)."""
        steps = sum(self.forward_passes.values())
        return self.tokens / steps if steps else None

    def to_dict(self) -> dict[str, Any]:
        return {"occupancy": self.occupancy, "occupancy_mean": _round(self.occupancy_mean),
                "decode_steps": self.decode_steps, "forward_passes": self.forward_passes,
                "tokens": self.tokens, "ttft_ms": _round(self.ttft_ms),
                "first_tokens": self.first_tokens, "tokens_per_step": _round(self.tokens_per_step)}


def engine_run(delta: dict[str, float]) -> EngineRun | None:
    """Read a metrics diff; ``None`` when the model publishes no generation metrics."""
    if not any(key.startswith(PREFIX) for key in delta):
        return None
    buckets = _buckets(delta, OCCUPANCY)
    count = delta.get(f"{OCCUPANCY}_count", 0.0)
    ttft_count = delta.get(f"{TTFT}_count", 0.0)
    forward: dict[str, int] = {}
    for key, value in delta.items():
        if key.startswith(FORWARD) and (phase := _PHASE.search(key)):
            forward[phase.group(1)] = forward.get(phase.group(1), 0) + int(value)
    return EngineRun(
        occupancy=buckets,
        occupancy_mean=delta.get(f"{OCCUPANCY}_sum", 0.0) / count if count else None,
        decode_steps=int(count) or forward.get("decode", 0),
        forward_passes=forward,
        tokens=int(delta.get(TOKENS, 0.0)),
        ttft_ms=1000.0 * delta.get(f"{TTFT}_sum", 0.0) / ttft_count if ttft_count else None,
        first_tokens=int(ttft_count),
    )


def _buckets(delta: dict[str, float], name: str) -> dict[str, int]:
    """Cumulative ``le`` buckets → count per bucket, labelled by the integers it holds."""
    bounds: list[tuple[float, float]] = []
    for key, value in delta.items():
        if key.startswith(f"{name}_bucket") and (match := _LE.search(key)):
            bounds.append((float(match.group(1)), value))
    bounds.sort()
    out: dict[str, int] = {}
    below, previous = 0.0, 0.0
    for upper, cumulative in bounds:
        out[_bucket_label(previous, upper)] = round(cumulative - below)
        below, previous = cumulative, upper
    return out


def _bucket_label(lower: float, upper: float) -> str:
    if math.isinf(upper):
        return f"> {lower:g}"
    first = math.floor(lower) + 1
    last = math.floor(upper)
    return f"{last}" if first >= last else f"{first}–{last}"


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
