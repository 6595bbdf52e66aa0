"""Split one batch into forward passes: little padding, and never over the token budget.

A batch padded to its longest text spends compute on padding; a forward per
text spends it on per-call overhead. For lengths sorted ascending, the split
that minimises ``sum(rows * longest + overhead)`` over contiguous groups is
found exactly by a small dynamic programme (n <= max_batch_size, so O(n^2) is
nothing next to a forward pass). Uniform lengths always give one group.

Every forward also stays within ``max_tokens`` padded positions
(``rows * longest``): activation memory grows with the tokens of one forward,
so this bound is what keeps an instance's peak memory fixed whatever the batch.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence


def plan_forwards(
    lengths: Sequence[int], overhead_tokens: int, max_tokens: int, by_length: bool
) -> list[list[int]]:
    """Row indices of each forward pass, covering every row once.

    Args:
        lengths: token count of each row, in request order.
        overhead_tokens: the fixed cost of one forward pass, in token positions.
        max_tokens: the most padded positions one forward may hold; a row longer
            than this still gets a forward of its own.
        by_length: sort rows by length and group them (length bucketing); else
            keep request order and cut only where the budget requires.
    """
    if not by_length:
        return [list(rows) for rows in chunk_in_order(lengths, max_tokens)]
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    groups = plan_groups([lengths[i] for i in order], overhead_tokens, max_tokens)
    return [order[group.start : group.stop] for group in groups]


def plan_groups(
    sorted_lengths: Sequence[int], overhead_tokens: int, max_tokens: int | None = None
) -> list[range]:
    """Contiguous index ranges over ``sorted_lengths`` (ascending) minimising padded cost.

    Args:
        sorted_lengths: token counts, ascending.
        overhead_tokens: the fixed cost of one forward pass, in token positions.
        max_tokens: no group may hold more than this many padded positions
            (``len(group) * longest``), except a single row longer than it.

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
        # The longest group ending here that fits the budget (one row always fits).
        most_rows = n if max_tokens is None else max(1, max_tokens // max(longest, 1))
        for start in range(max(0, end - most_rows), end):
            cost = best[start] + (end - start) * longest + overhead_tokens
            if cost < best[end]:
                best[end], start_of[end] = cost, start
    groups = []
    end = n
    while end > 0:
        groups.append(range(start_of[end], end))
        end = start_of[end]
    return groups[::-1]


def chunk_in_order(lengths: Sequence[int], max_tokens: int) -> list[range]:
    """Consecutive rows, each chunk padded to its own longest, within ``max_tokens``."""
    chunks: list[range] = []
    start, longest = 0, 0
    for index, length in enumerate(lengths):
        wider = max(longest, length)
        if index > start and (index - start + 1) * wider > max_tokens:
            chunks.append(range(start, index))
            start, wider = index, length
        longest = wider
    if lengths:
        chunks.append(range(start, len(lengths)))
    return chunks
