"""The in-process ceiling: the model's forward loop at fixed batch sizes, no server.

This is the throughput a server could reach if serving cost nothing: the same
``TextEncoder.encode`` the Triton model calls, fed back-to-back batches from
the same text mix. The best batch size's texts/s is the ceiling. The same loop
with length grouping off (every batch padded to its longest text, one forward)
is the naive in-process loop a user would write, measured beside it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ds_triton.embedding.encoder import TextEncoder

LENGTH_GROUPS = "length groups"
NAIVE = "naive (pad to longest)"


@dataclass(frozen=True)
class CeilingPoint:
    """Throughput of back-to-back ``encode`` calls at one batch size."""

    texts: str
    batch_size: int
    batches: int
    seconds: float
    padding: str = LENGTH_GROUPS

    @property
    def items_per_s(self) -> float:
        return self.batches * self.batch_size / self.seconds if self.seconds else 0.0

    @property
    def batch_latency_ms(self) -> float:
        return self.seconds / self.batches * 1000.0 if self.batches else 0.0

    def to_row(self) -> dict[str, Any]:
        return {"texts": self.texts, "padding": self.padding, "batch_size": self.batch_size,
                "batches": self.batches,
                "seconds": round(self.seconds, 3), "items_per_s": round(self.items_per_s, 3),
                "batch_latency_ms": round(self.batch_latency_ms, 3)}


def measure_ceiling(encoder: TextEncoder, texts: Sequence[str], mix_name: str, batch_size: int,
                    duration_s: float, warmup_batches: int = 1, padding: str = LENGTH_GROUPS) -> CeilingPoint:
    """Encode consecutive ``batch_size`` slices of ``texts`` for ``duration_s`` seconds."""
    position = 0

    def next_batch() -> list[str]:
        nonlocal position
        batch = [texts[(position + i) % len(texts)] for i in range(batch_size)]
        position = (position + batch_size) % len(texts)
        return batch

    for _ in range(warmup_batches):
        encoder.encode(next_batch())
    count = 0
    start = time.perf_counter()
    # At least one timed batch, even when one batch is longer than the budget.
    while count == 0 or time.perf_counter() - start < duration_s:
        encoder.encode(next_batch())
        count += 1
    return CeilingPoint(mix_name, batch_size, count, time.perf_counter() - start, padding)
