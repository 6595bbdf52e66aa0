"""Which sequence holds which row ("slot") of the preallocated KV cache.

The decode forward runs over the running sequences as one contiguous block of
cache rows, ``[0, running)``, so the cache it reads is a view, never a copy.
Sequences still being prefilled hold rows at or above ``running``. Keeping the
block contiguous costs at most one row copy when a sequence joins or leaves:

- a running sequence that leaves is replaced by the last running row (one move);
- a prefilled sequence that starts decoding is swapped into row ``running``
  when it is not there already (one swap).

This module is pure bookkeeping: it returns the row copies to make and the
cache applies them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Move:
    """Copy row ``source`` into row ``target`` (``source`` becomes free)."""

    source: int
    target: int


@dataclass(frozen=True)
class Swap:
    """Exchange rows ``first`` and ``second``."""

    first: int
    second: int


RowCopy = Move | Swap


class SlotTable(Generic[T]):
    """Occupants of ``capacity`` cache rows; running ones fill ``[0, running)``."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.running = 0
        self._rows: list[T | None] = [None] * capacity
        self._where: dict[int, int] = {}  # id(occupant) -> row

    def __len__(self) -> int:
        """Rows in use (running and prefilling)."""
        return len(self._where)

    @property
    def free(self) -> int:
        return self.capacity - len(self._where)

    def occupant(self, row: int) -> T | None:
        return self._rows[row]

    def row_of(self, occupant: T) -> int:
        return self._where[id(occupant)]

    def holds(self, occupant: T) -> bool:
        return id(occupant) in self._where

    def running_occupants(self) -> list[T]:
        """Running occupants in row order (the order of the decode batch)."""
        return [o for o in self._rows[: self.running] if o is not None]

    def acquire(self, occupant: T) -> int:
        """Give ``occupant`` a free row outside the running block (the lowest one)."""
        if id(occupant) in self._where:
            raise ValueError("already holds a row")
        for row in range(self.running, self.capacity):
            if self._rows[row] is None:
                self._place(occupant, row)
                return row
        raise LookupError("no free row")

    def start_running(self, occupant: T) -> list[RowCopy]:
        """Make ``occupant`` (prefilled) the next running row; returns the copies to make."""
        row = self._where[id(occupant)]
        if row < self.running:
            raise ValueError("already running")
        target = self.running
        self.running += 1
        if row == target:
            return []
        other = self._rows[target]
        self._place(occupant, target)
        if other is None:
            self._rows[row] = None
            return [Move(row, target)]
        self._place(other, row)
        return [Swap(row, target)]

    def release(self, occupant: T) -> list[RowCopy]:
        """Free ``occupant``'s row; returns the copies that keep the running block contiguous."""
        row = self._where.pop(id(occupant))
        self._rows[row] = None
        if row >= self.running:
            return []
        last = self.running - 1
        self.running -= 1
        if row == last:
            return []
        moved = self._rows[last]
        if moved is None:  # rows below ``running`` are always occupied
            raise RuntimeError(f"running row {last} is empty")
        self._rows[last] = None
        self._place(moved, row)
        return [Move(last, row)]

    def clear(self) -> None:
        self.running = 0
        self._rows = [None] * self.capacity
        self._where.clear()

    def _place(self, occupant: T, row: int) -> None:
        self._rows[row] = occupant
        self._where[id(occupant)] = row
