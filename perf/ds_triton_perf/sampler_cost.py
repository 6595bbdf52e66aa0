"""What the sampling keys of the vLLM interface cost a decode step when no request uses them.

Before those keys (penalties, biases, allowed and bad words, min_p, logprobs) a greedy
step's sampling was ``logits.float().argmax(-1)``. The sampler now also walks each row's
plan, and skips every processor when no row has one. This measures the difference
in-process, on random logits of the served model's vocabulary at the bench's row count:
the sampler with default (greedy, no key) settings against that bare argmax, in
alternating blocks so that drift hits both alike, on one torch thread as the engine runs.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class SamplerCost:
    """Microseconds per step: the sampler with no key in use, the bare argmax, and the difference
    (negative when the two are closer than this measurement's own noise)."""

    rows: int
    vocab: int
    sampler_us: float
    argmax_us: float

    @property
    def overhead_us(self) -> float:
        return self.sampler_us - self.argmax_us


def measure(vocab: int, rows: int, *, blocks: int = 9, steps_per_block: int = 200) -> SamplerCost:
    """Median per-step time of each side over ``blocks`` alternating blocks."""
    import torch

    from ds_triton.generation.logits_processors import RowPlan
    from ds_triton.generation.params import SamplingParams
    from ds_triton.generation.sampling import Sampler

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        logits = torch.randn(rows, vocab)
        sampler = Sampler(vocab, rows)
        params = [SamplingParams(temperature=0.0)] * rows
        generators = [None] * rows
        plans = [RowPlan() for _ in range(rows)]

        def new() -> object:
            return sampler.sample(logits, params, generators, plans).tokens

        def old() -> object:
            return logits.float().argmax(dim=-1)

        sides: dict[str, list[float]] = {"new": [], "old": []}
        for _ in range(blocks):
            for name, step in (("new", new), ("old", old)):
                sides[name].append(_per_step_us(step, steps_per_block))
    finally:
        torch.set_num_threads(threads)
    return SamplerCost(rows, vocab, statistics.median(sides["new"]), statistics.median(sides["old"]))


def _per_step_us(step: Callable[[], object], steps: int) -> float:
    step()  # warm
    started = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - started) / steps * 1e6
