"""The length-aware split of a batch into forward passes."""

from __future__ import annotations

import pytest

from ds_triton.embedding.buckets import plan_groups


def cost(lengths: list[int], groups: list[range], overhead: int) -> int:
    return sum(len(g) * lengths[g.stop - 1] + overhead for g in groups)


def test_uniform_lengths_make_one_forward() -> None:
    assert plan_groups([12] * 64, overhead_tokens=64) == [range(0, 64)]


def test_distinct_length_clusters_split_apart() -> None:
    lengths = [8] * 20 + [40] * 20 + [200] * 24
    assert plan_groups(lengths, overhead_tokens=64) == [range(0, 20), range(20, 40), range(40, 64)]


def test_groups_cover_every_row_once_in_order_and_beat_one_padded_forward() -> None:
    lengths = sorted([5, 7, 7, 9, 30, 31, 33, 120, 128, 250] * 3)
    groups = plan_groups(lengths, overhead_tokens=64)
    assert [i for g in groups for i in g] == list(range(len(lengths)))
    assert cost(lengths, groups, 64) <= cost(lengths, [range(len(lengths))], 64)


def test_huge_overhead_means_one_forward() -> None:
    assert plan_groups([1, 50, 500], overhead_tokens=10**9) == [range(0, 3)]


def test_empty_and_unsorted() -> None:
    assert plan_groups([], 64) == []
    with pytest.raises(ValueError, match="sorted"):
        plan_groups([3, 1], 64)
