"""Pure scheduling logic: cache-row allocation and reuse, the chunked prefill plan, the token budget."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ds_triton.generation.scheduler import PrefillChunk, TokenBudget, plan_prefill
from ds_triton.generation.slots import Move, SlotTable, Swap

# -- rows ----------------------------------------------------------------------


@dataclass(eq=False)
class Occupant:
    name: int


def test_rows_are_reused_and_running_rows_stay_contiguous() -> None:
    a, b, c, d = (Occupant(i) for i in range(4))
    table: SlotTable[Occupant] = SlotTable(4)
    assert [table.acquire(s) for s in (a, b, c)] == [0, 1, 2]
    assert table.start_running(a) == [] and table.start_running(b) == []
    assert table.running == 2 and table.running_occupants() == [a, b]
    # "a" leaves: the last running row moves into its place, nothing else moves.
    assert table.release(a) == [Move(1, 0)]
    assert table.running_occupants() == [b] and table.row_of(c) == 2
    # "c" starts running: row 1 (free) is next, so "c" moves there.
    assert table.start_running(c) == [Move(2, 1)]
    assert table.running_occupants() == [b, c]
    assert table.acquire(d) == 2  # the freed row is reused
    assert table.free == 1 and len(table) == 3


def test_a_prefilled_sequence_swaps_with_one_still_prefilling() -> None:
    x, y, z = (Occupant(i) for i in range(3))
    table: SlotTable[Occupant] = SlotTable(3)
    for s in (x, y, z):
        table.acquire(s)
    assert table.start_running(y) == [Swap(1, 0)]  # "x" is still prefilling: it moves up
    assert table.row_of(y) == 0 and table.row_of(x) == 1
    assert table.release(z) == []  # not running: nothing to keep contiguous
    full: SlotTable[Occupant] = SlotTable(1)
    full.acquire(x)
    with pytest.raises(LookupError):
        full.acquire(y)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["acquire", "run", "release"]), st.integers(0, 50)), max_size=60))
def test_any_sequence_of_joins_and_leaves_keeps_each_row_with_its_sequence(
    operations: list[tuple[str, int]],
) -> None:
    """Row contents follow their sequence through every copy the table asks for."""
    capacity = 5
    table: SlotTable[Occupant] = SlotTable(capacity)
    rows: list[int | None] = [None] * capacity  # what each cache row holds (a sequence's name)
    prefilling: list[Occupant] = []
    counter = 0

    def apply(copies: list[Move | Swap]) -> None:
        for copy in copies:
            if isinstance(copy, Move):
                rows[copy.target], rows[copy.source] = rows[copy.source], None
            else:
                rows[copy.first], rows[copy.second] = rows[copy.second], rows[copy.first]

    for operation, pick in operations:
        if operation == "acquire" and table.free:
            counter += 1
            occupant = Occupant(counter)
            rows[table.acquire(occupant)] = occupant.name
            prefilling.append(occupant)
        elif operation == "run" and prefilling:
            apply(table.start_running(prefilling.pop(pick % len(prefilling))))
        elif operation == "release" and len(table):
            holders = [table.occupant(r) for r in range(capacity) if table.occupant(r) is not None]
            leaving = holders[pick % len(holders)]
            assert leaving is not None
            if leaving in prefilling:
                prefilling.remove(leaving)
            row = table.row_of(leaving)
            apply(table.release(leaving))
            if rows[row] == leaving.name:
                rows[row] = None
        for row in range(capacity):
            occupant = table.occupant(row)
            assert (occupant.name if occupant else None) == rows[row]
        assert all(table.occupant(r) is not None for r in range(table.running))


# -- chunked prefill -----------------------------------------------------------


@dataclass(eq=False)
class Prompt:
    prompt_length: int
    prefilled: int = 0


def advance(chunk: PrefillChunk[Prompt], queue: list[Prompt]) -> None:
    for index, prompt in enumerate(chunk.sequences):
        prompt.prefilled += chunk.lengths[index]
        if chunk.completes(index):
            queue.remove(prompt)


def test_a_long_prompt_is_prefilled_in_chunks_before_the_next_one() -> None:
    long, short = Prompt(20), Prompt(3)
    queue = [long, short]
    plans = []
    while queue:
        chunk = plan_prefill(queue, max_tokens=8)
        assert chunk is not None and chunk.padded_tokens <= 8
        pieces = zip(chunk.sequences, chunk.lengths, strict=True)
        plans.append([(p.prompt_length, chunk.start, n) for p, n in pieces])
        advance(chunk, queue)
    assert plans == [[(20, 0, 8)], [(20, 8, 8)], [(20, 16, 4)], [(3, 0, 3)]]


def test_short_prompts_share_one_forward_while_their_padding_fits() -> None:
    queue = [Prompt(3), Prompt(5), Prompt(2), Prompt(4)]
    chunk = plan_prefill(queue, max_tokens=16)
    assert chunk is not None
    assert chunk.lengths == (3, 5, 2) and chunk.width == 5 and chunk.padded_tokens == 15
    assert all(chunk.completes(i) for i in range(3))
    assert plan_prefill([], 16) is None
    with pytest.raises(ValueError):
        plan_prefill(queue, 0)


# -- token budget --------------------------------------------------------------


def test_the_budget_refuses_what_does_not_fit_and_takes_back_what_is_given() -> None:
    budget = TokenBudget(100)
    budget.take(60)
    assert budget.fits(40) and not budget.fits(41)
    with pytest.raises(ValueError, match="do not fit"):
        budget.take(41)
    budget.give_back(60)
    assert budget.reserved == 0 and budget.fits(100)


# -- spec ----------------------------------------------------------------------


def test_the_spec_refuses_a_budget_the_longest_request_cannot_fit() -> None:
    from ds_triton.errors import SpecError
    from ds_triton.spec import GenerationSpec

    GenerationSpec(max_prompt_tokens=100, max_tokens_limit=28, max_batch_total_tokens=128).validate()
    with pytest.raises(SpecError, match=r"max_batch_total_tokens \(127\) must be at least"):
        GenerationSpec(max_prompt_tokens=100, max_tokens_limit=28, max_batch_total_tokens=127).validate()
    with pytest.raises(SpecError, match=r"generation\.max_prefill_tokens must be >= 1"):
        GenerationSpec(max_prefill_tokens=0).validate()
