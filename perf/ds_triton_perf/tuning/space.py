"""The search space: ordered dimensions, candidates, the grid and a candidate's neighbours.

Pure logic: what a candidate *means* for a model spec lives in
:mod:`ds_triton_perf.tuning.settings`, and which candidates can run on this
machine is the space's ``constraint`` (a function returning the reason a
candidate cannot run, or ``None``). Values of a dimension are ordered, so a
neighbour is one step up or down in one dimension; coupled dimensions (for
example instances and threads, whose product is bounded by the cores) also
get the diagonal moves that trade one for the other.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

Value = int | str | None
Constraint = Callable[["Candidate"], str | None]


@dataclass(frozen=True)
class Dimension:
    """One tunable setting and its values, in order (neighbours are adjacent values)."""

    name: str
    values: tuple[Value, ...]

    def __post_init__(self) -> None:
        if not self.values:
            raise ValueError(f"dimension {self.name!r} has no values")
        if len(set(self.values)) != len(self.values):
            raise ValueError(f"dimension {self.name!r} repeats a value: {list(self.values)}")

    def index(self, value: Value) -> int:
        return self.values.index(value)

    def nearest(self, value: Value) -> Value:
        """``value`` itself when listed, else the closest listed number (the first value otherwise)."""
        if value in self.values:
            return value
        numbers = [v for v in self.values if isinstance(v, int)]
        if isinstance(value, int) and numbers:
            return min(numbers, key=lambda v: (abs(v - value), v))
        return self.values[0]


@dataclass(frozen=True, order=True)
class Candidate:
    """One point of the space: a value per dimension, in the space's dimension order."""

    settings: tuple[tuple[str, Value], ...]

    @classmethod
    def of(cls, values: Mapping[str, Value]) -> Candidate:
        return cls(tuple(values.items()))

    def __getitem__(self, name: str) -> Value:
        for key, value in self.settings:
            if key == name:
                return value
        raise KeyError(name)

    def as_dict(self) -> dict[str, Value]:
        return dict(self.settings)

    def replace(self, **values: Value) -> Candidate:
        return Candidate(tuple((k, values.get(k, v)) for k, v in self.settings))

    @property
    def key(self) -> str:
        """A stable text form (journal key, report label): ``instances=2 threads=1 ...``."""
        return " ".join(f"{k}={_text(v)}" for k, v in self.settings)

    def differences(self, other: Candidate) -> dict[str, tuple[Value, Value]]:
        """Settings that differ, as ``name: (mine, other's)``."""
        theirs = other.as_dict()
        return {k: (v, theirs.get(k)) for k, v in self.settings if theirs.get(k) != v}


def _text(value: Value) -> str:
    return "none" if value is None else str(value)


def _always(_candidate: Candidate) -> str | None:
    return None


@dataclass(frozen=True)
class SearchSpace:
    """Dimensions, the constraint every candidate must pass, and which dimensions are coupled."""

    dimensions: tuple[Dimension, ...]
    constraint: Constraint = _always
    coupled: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        names = [d.name for d in self.dimensions]
        if len(set(names)) != len(names):
            raise ValueError(f"dimension names repeat: {names}")
        for pair in self.coupled:
            if not set(pair) <= set(names):
                raise ValueError(f"coupled dimensions {pair} are not all in the space {names}")

    @property
    def names(self) -> list[str]:
        return [d.name for d in self.dimensions]

    def dimension(self, name: str) -> Dimension:
        for dimension in self.dimensions:
            if dimension.name == name:
                return dimension
        raise KeyError(name)

    def why_not(self, candidate: Candidate) -> str | None:
        """Why ``candidate`` cannot run (``None`` when it can)."""
        for name, value in candidate.settings:
            if value not in self.dimension(name).values:
                listed = [_text(v) for v in self.dimension(name).values]
                return f"{name}={_text(value)} is not one of {listed}"
        return self.constraint(candidate)

    def is_valid(self, candidate: Candidate) -> bool:
        return self.why_not(candidate) is None

    def grid(self) -> Iterator[Candidate]:
        """Every combination of values (valid or not), the last dimension varying fastest."""
        for values in itertools.product(*(d.values for d in self.dimensions)):
            yield Candidate(tuple(zip(self.names, values, strict=True)))

    def valid_grid(self) -> list[Candidate]:
        return [c for c in self.grid() if self.is_valid(c)]

    def rejected(self) -> list[tuple[Candidate, str]]:
        """Grid points the constraint rules out, with the reason (for the report)."""
        out = []
        for candidate in self.grid():
            reason = self.why_not(candidate)
            if reason is not None:
                out.append((candidate, reason))
        return out

    @property
    def size(self) -> int:
        total = 1
        for dimension in self.dimensions:
            total *= len(dimension.values)
        return total

    def snap(self, values: Mapping[str, Value]) -> Candidate:
        """The grid point nearest to ``values`` (a spec's current settings), dimension by dimension."""
        return Candidate(tuple((d.name, d.nearest(values.get(d.name))) for d in self.dimensions))

    def neighbours(self, candidate: Candidate) -> list[Candidate]:
        """Valid candidates one step away: ±1 in one dimension, or a trade along a coupled pair."""
        moves: list[dict[str, int]] = [{d.name: step} for d in self.dimensions for step in (-1, 1)]
        moves += [{a: step, b: -step} for a, b in self.coupled for step in (-1, 1)]
        found: list[Candidate] = []
        for move in moves:
            moved = self._moved(candidate, move)
            if moved is not None and moved not in found and self.is_valid(moved):
                found.append(moved)
        return found

    def _moved(self, candidate: Candidate, move: Mapping[str, int]) -> Candidate | None:
        values = candidate.as_dict()
        for name, step in move.items():
            dimension = self.dimension(name)
            index = dimension.index(values[name]) + step
            if not 0 <= index < len(dimension.values):
                return None
            values[name] = dimension.values[index]
        return Candidate.of(values)


def restrict(space: SearchSpace, values: Mapping[str, Sequence[Value]]) -> SearchSpace:
    """The space with some dimensions' values replaced (``--set``); a single value fixes one."""
    unknown = sorted(set(values) - set(space.names))
    if unknown:
        raise ValueError(f"unknown dimension(s) {unknown}; this model's are {space.names}")
    dimensions = tuple(
        Dimension(d.name, tuple(values[d.name])) if d.name in values else d for d in space.dimensions
    )
    return SearchSpace(dimensions, space.constraint, space.coupled)
