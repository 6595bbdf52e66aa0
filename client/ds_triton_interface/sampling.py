"""The generation model's sampling keys: each key's JSON type and allowed range, declared once.

The client checks keyword arguments against this before sending; the server
checks the ``sampling_parameters`` it received (after coercing the strings that
vLLM-backend clients send) against the same entries. A new key is one entry in
``SAMPLING_KEYS``. Limits that depend on the deployment (``max_tokens`` at most
the spec's ``max_tokens_limit``) or on another key (``min_tokens`` <= ``max_tokens``)
are the server's to check.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["int", "float", "bool", "strings"]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # bool is an int subclass


def _is_number(value: Any) -> bool:
    return _is_int(value) or isinstance(value, float)


def _is_strings(value: Any) -> bool:
    return isinstance(value, str) or (
        isinstance(value, list | tuple) and all(isinstance(item, str) for item in value)
    )


#: Each kind: how to tell a value of it, and how to say what it must be.
KINDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "int": (_is_int, "an integer"),
    "float": (_is_number, "a number"),
    "bool": (lambda value: isinstance(value, bool), "true or false"),
    "strings": (_is_strings, "a string or a list of strings"),
}


@dataclass(frozen=True)
class Range:
    """A numeric interval; ``None`` leaves a side open-ended. Non-finite numbers are never in it."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value: object) -> bool:
        if not isinstance(value, int | float) or not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return not (self.high is not None and (value >= self.high if self.high_open else value > self.high))

    def __str__(self) -> str:
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {_number(self.low)}"
        if self.low is None:
            return f"{'<' if self.high_open else '<='} {_number(self.high)}"
        left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
        return f"in {left}{_number(self.low)}, {_number(self.high)}{right}"


def _number(value: float | None) -> str:
    return str(int(value)) if value is not None and float(value).is_integer() else f"{value:g}"


@dataclass(frozen=True)
class SamplingKey:
    """One key of ``sampling_parameters``.

    Attributes:
        name: The JSON key (vLLM's ``SamplingParams`` name).
        kind: Its JSON type (see ``KINDS``).
        help: What it does, for docs and ``--help``.
        range: Allowed values of a numeric key (None: any).
        nonempty_items: A string (list) key whose strings must not be empty.
    """

    name: str
    kind: Kind
    help: str
    range: Range | None = None
    nonempty_items: bool = False

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is not allowed for this key (``"must be ..."``), or None when it is."""
        accepts, type_name = KINDS[self.kind]
        if not accepts(value):
            return f"must be {type_name}"
        if self.range is not None and value not in self.range:
            return f"must be {self.range}"
        if self.nonempty_items and any(not item for item in ([value] if isinstance(value, str) else value)):
            return "must not contain empty strings"
        return None


def _keys(*keys: SamplingKey) -> dict[str, SamplingKey]:
    return {key.name: key for key in keys}


#: Every key the generation model accepts in ``sampling_parameters``.
SAMPLING_KEYS: dict[str, SamplingKey] = _keys(
    SamplingKey("max_tokens", "int", "most tokens to generate", Range(low=1)),
    SamplingKey("temperature", "float", "0 = greedy; higher flattens the distribution", Range(low=0)),
    SamplingKey("top_p", "float", "nucleus sampling mass", Range(0, 1, low_open=True)),
    SamplingKey("top_k", "int", "keep the k most likely tokens; 0 or -1 keeps all", Range(low=-1)),
    SamplingKey("seed", "int", "seed of this request's own generator", Range(0, 2**63 - 1)),
    SamplingKey("stop", "strings", "strings that end generation (not returned)", nonempty_items=True),
    SamplingKey("ignore_eos", "bool", "keep generating after the EOS token"),
    SamplingKey("min_tokens", "int", "EOS and stop strings cannot end the output before this", Range(low=0)),
)
