"""The length-aware split of a batch into forward passes."""

from __future__ import annotations

import pytest

from ds_triton.embedding.buckets import chunk_in_order, plan_forwards, plan_groups


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


def test_no_group_exceeds_the_token_budget() -> None:
    lengths = sorted([5, 7, 7, 9, 30, 31, 33, 120, 128, 250] * 6)
    groups = plan_groups(lengths, overhead_tokens=64, max_tokens=512)
    assert [i for g in groups for i in g] == list(range(len(lengths)))
    assert all(len(g) * lengths[g.stop - 1] <= 512 for g in groups)
    # Without the budget the same lengths make fewer, larger groups.
    assert len(plan_groups(lengths, overhead_tokens=64)) < len(groups)


def test_uniform_lengths_over_the_budget_split_evenly_enough() -> None:
    groups = plan_groups([256] * 64, overhead_tokens=64, max_tokens=4096)
    assert [len(g) for g in groups] == [16, 16, 16, 16]


def test_a_row_longer_than_the_budget_still_gets_its_own_forward() -> None:
    assert plan_groups([10, 900], overhead_tokens=64, max_tokens=512) == [range(0, 1), range(1, 2)]


def test_plan_forwards_by_length_maps_back_to_request_rows() -> None:
    lengths = [200, 3, 180, 4, 5, 190]
    forwards = plan_forwards(lengths, overhead_tokens=64, max_tokens=4096, by_length=True)
    assert sorted(row for rows in forwards for row in rows) == list(range(6))
    assert [sorted(rows) for rows in forwards] == [[1, 3, 4], [0, 2, 5]]


def test_plan_forwards_in_request_order_cuts_only_for_the_budget() -> None:
    lengths = [10, 200, 10, 10, 100]
    assert plan_forwards(lengths, 64, max_tokens=4096, by_length=False) == [[0, 1, 2, 3, 4]]
    forwards = plan_forwards(lengths, 64, max_tokens=400, by_length=False)
    assert forwards == [[0, 1], [2, 3, 4]]
    assert all(len(rows) * max(lengths[i] for i in rows) <= 400 for rows in forwards)
    assert chunk_in_order([], 100) == []
