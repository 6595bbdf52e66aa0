"""Sampling parameters as Triton's vLLM backend accepts them, parsed and validated.

Clients written for that backend send the JSON either as the ``sampling_parameters``
tensor or as request parameters, often with every value as a string
(``{"temperature": "0.1", "max_tokens": "100"}``, as in its sample client), so values
are coerced to each field's type the way the vLLM backend does. Unknown keys are
rejected instead of ignored: a typo such as ``max_token`` must not silently fall
back to a default.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ds_triton.errors import InvalidInputError
from ds_triton_interface import SAMPLING_KEYS as KEYS
from ds_triton_interface import SAMPLING_PARAMETERS as FIELD


@dataclass(frozen=True)
class SamplingParams:
    """How one sequence is decoded.

    Attributes:
        max_tokens: Most tokens to generate (EOS included when it ends the sequence).
        temperature: 0 means greedy decoding; larger values flatten the distribution.
        top_p: Nucleus sampling mass in (0, 1]; 1 keeps every token.
        top_k: Keep the k most likely tokens; 0 or -1 keeps every token.
        seed: Seed of this sequence's own random generator (reproducible sampling).
        stop: Strings that end generation; the matched string is not returned.
        ignore_eos: Keep generating after the EOS token (benchmarks use this).
        min_tokens: EOS and stop strings cannot end the sequence before this many tokens.
    """

    max_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    ignore_eos: bool = False
    min_tokens: int = 0

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    def validate(self, max_tokens_limit: int) -> None:
        """Raise ``InvalidInputError`` naming the first field out of its declared range.

        Types and ranges come from the shared interface declaration; the limits that
        depend on the deployment or on another field are checked here.
        """
        for key in KEYS.values():
            value = getattr(self, key.name)
            problem = None if value is None else key.problem(value)
            if problem:
                raise InvalidInputError(f"{FIELD}.{key.name} {problem}, got {value!r}")
        if self.max_tokens > max_tokens_limit:
            raise InvalidInputError(
                f"{FIELD}.max_tokens must be between 1 and {max_tokens_limit}, got {self.max_tokens}"
            )
        if self.min_tokens > self.max_tokens:
            raise InvalidInputError(
                f"{FIELD}.min_tokens must be between 0 and max_tokens ({self.max_tokens}), "
                f"got {self.min_tokens}"
            )


def _to_int(name: str, value: Any) -> int:
    if isinstance(value, bool):
        raise InvalidInputError(f"{FIELD}.{name} must be an integer, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise InvalidInputError(f"{FIELD}.{name} must be an integer, got {value!r}")


def _to_float(name: str, value: Any) -> float:
    if isinstance(value, bool):
        raise InvalidInputError(f"{FIELD}.{name} must be a number, got {value!r}")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            pass
    raise InvalidInputError(f"{FIELD}.{name} must be a number, got {value!r}")


def to_bool(name: str, value: Any) -> bool:
    """``true``/``false`` as JSON booleans, 0/1, or the strings Triton clients send."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
        return value.strip().lower() in ("true", "1")
    raise InvalidInputError(f"{name} must be true or false, got {value!r}")


def _to_stop(name: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list | tuple) and all(isinstance(s, str) for s in value):
        return tuple(value)
    raise InvalidInputError(f"{FIELD}.{name} must be a string or a list of strings, got {value!r}")


#: How each kind of key is coerced from what vLLM-backend clients send (often strings).
_KIND_CONVERTERS: dict[str, Callable[[str, Any], Any]] = {
    "int": _to_int,
    "float": _to_float,
    "bool": lambda name, value: to_bool(f"{FIELD}.{name}", value),
    "strings": _to_stop,
}
_CONVERTERS: dict[str, Callable[[str, Any], Any]] = {
    name: _KIND_CONVERTERS[key.kind] for name, key in KEYS.items()
}
SAMPLING_KEYS: tuple[str, ...] = tuple(KEYS)


def decode_json_object(raw: bytes | str, field: str = FIELD) -> dict[str, Any]:
    """Parse a JSON object from bytes or text; errors name ``field``."""
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidInputError(f"{field} is not valid UTF-8: {exc}") from exc
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"{field} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidInputError(f"{field} must be a JSON object, got {type(data).__name__}")
    return data


def sampling_params_from_dict(
    data: Mapping[str, Any], default_max_tokens: int, max_tokens_limit: int
) -> SamplingParams:
    """Build and validate ``SamplingParams``; ``null`` values mean "use the default"."""
    unknown = sorted(set(data) - set(_CONVERTERS))
    if unknown:
        raise InvalidInputError(
            f"{FIELD}: unknown key(s) {', '.join(unknown)}; supported: {', '.join(SAMPLING_KEYS)}"
        )
    values: dict[str, Any] = {"max_tokens": default_max_tokens}
    for key, value in data.items():
        if value is not None:
            values[key] = _CONVERTERS[key](key, value)
    params = SamplingParams(**values)
    params.validate(max_tokens_limit)
    return params
