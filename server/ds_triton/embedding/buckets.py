"""Length-aware split of one batch into a few forward passes with little padding.

A batch padded to its longest text spends compute on padding; a forward per
text spends it on per-call overhead. For lengths sorted ascending, the split
that minimises ``sum(rows * longest + overhead)`` over contiguous groups is
found exactly by a small dynamic programme (n <= max_batch_size, so O(n^2) is
nothing next to a forward pass). Uniform lengths always give one group.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence


def plan_groups(sorted_lengths: Sequence[int], overhead_tokens: int) -> list[range]:
    """Contiguous index ranges over ``sorted_lengths`` (ascending) minimising padded cost.

    Args:
        sorted_lengths: token counts, ascending.
        overhead_tokens: the fixed cost of one forward pass, in token positions.

    Returns:
        Ranges covering ``0..len(sorted_lengths)`` in order.
    """
    n = len(sorted_lengths)
    if n == 0:
        return []
    if any(b < a for a, b in itertools.pairwise(sorted_lengths)):
        raise ValueError("plan_groups needs lengths sorted ascending")
    best = [0.0] + [float("inf")] * n
    start_of = [0] * (n + 1)
    for end in range(1, n + 1):
        longest = sorted_lengths[end - 1]
        for start in range(end):
            cost = best[start] + (end - start) * longest + overhead_tokens
            if cost < best[end]:
                best[end], start_of[end] = cost, start
    groups = []
    end = n
    while end > 0:
        groups.append(range(start_of[end], end))
        end = start_of[end]
    return groups[::-1]
