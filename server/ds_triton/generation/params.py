"""Sampling parameters as Triton's vLLM backend accepts them, parsed and validated.

Clients written for that backend send the JSON either as the ``sampling_parameters``
tensor or as request parameters, often with every value as a string
(``{"temperature": "0.1", "max_tokens": "100"}``, as in its sample client), so values
are coerced to each field's type the way the vLLM backend does. Unknown keys are
rejected instead of ignored: a typo such as ``max_token`` must not silently fall
back to a default. This module is the one place that checks keys and ranges.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ds_triton.errors import InvalidInputError
from ds_triton_interface import SAMPLING_KEYS as KEYS
from ds_triton_interface import SAMPLING_PARAMETERS as FIELD


@dataclass(frozen=True)
class SamplingParams:
    """How one sequence is decoded (vLLM's ``SamplingParams`` names and defaults).

    Attributes:
        max_tokens: Most tokens to generate (EOS included when it ends the sequence).
        temperature: 0 means greedy decoding; larger values flatten the distribution.
        top_p: Nucleus sampling mass in (0, 1]; 1 keeps every token.
        top_k: Keep the k most likely tokens; 0 or -1 keeps every token.
        min_p: Drop tokens less likely than ``min_p`` times the most likely one.
        seed: Seed of this sequence's own random generator (reproducible sampling).
        stop: Strings that end generation; the matched string is not returned.
        stop_token_ids: Tokens that end generation (their text is not returned).
        include_stop_str_in_output: Return the matched stop string / stop token's text.
        ignore_eos: Keep generating after the EOS token (benchmarks use this).
        min_tokens: EOS, stop tokens and stop strings cannot end the sequence before this many.
        repetition_penalty: HF's penalty on tokens of the prompt and output (1 = off).
        presence_penalty: Subtracted once from each token already in the output.
        frequency_penalty: Subtracted per occurrence of a token in the output.
        logit_bias: Bias added to the logits, by token id.
        allowed_token_ids: Only these tokens may be generated (None: any).
        bad_words: Words that are never generated.
        logprobs: Top tokens listed per generated token (None: no log-probabilities).
        prompt_logprobs: Top tokens listed per prompt token (None: none).
        skip_special_tokens: Leave special tokens out of the text.
        spaces_between_special_tokens: Put spaces around special tokens in the text.
        n: Sequences per request; only 1 is served.
        best_of: Candidates to choose from; only 1 (or unset) is served.
    """

    max_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] = ()
    include_stop_str_in_output: bool = False
    ignore_eos: bool = False
    min_tokens: int = 0
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: Mapping[int, float] = field(default_factory=dict)
    allowed_token_ids: tuple[int, ...] | None = None
    bad_words: tuple[str, ...] = ()
    logprobs: int | None = None
    prompt_logprobs: int | None = None
    skip_special_tokens: bool = True
    spaces_between_special_tokens: bool = True
    n: int = 1
    best_of: int | None = None

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    @property
    def penalized(self) -> bool:
        return (
            self.repetition_penalty != 1.0
            or self.presence_penalty != 0.0
            or self.frequency_penalty != 0.0
        )

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
        for name, value in (("n", self.n), ("best_of", self.best_of)):
            if value not in (None, 1):
                raise InvalidInputError(
                    f"{FIELD}.{name} must be 1, got {value}: this server returns one sequence "
                    "per request (n and best_of above 1 are not supported; send several requests)"
                )
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


def _to_strings(name: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list | tuple) and all(isinstance(s, str) for s in value):
        return tuple(value)
    raise InvalidInputError(f"{FIELD}.{name} must be a string or a list of strings, got {value!r}")


def _to_ints(name: str, value: Any) -> tuple[int, ...]:
    if isinstance(value, list | tuple):
        try:
            return tuple(_to_int(name, item) for item in value)
        except InvalidInputError:
            pass
    raise InvalidInputError(f"{FIELD}.{name} must be a list of token ids, got {value!r}")


def _to_bias(name: str, value: Any) -> dict[int, float]:
    """OpenAI's form: ``{"<token id>": bias}`` (JSON object keys are strings)."""
    if not isinstance(value, dict):
        raise InvalidInputError(f"{FIELD}.{name} must be an object of token id -> bias, got {value!r}")
    return {
        _to_int(f"{name} key", token): _to_float(f"{name}[{token}]", bias) for token, bias in value.items()
    }


def _flag(name: str, value: Any) -> bool:
    return to_bool(f"{FIELD}.{name}", value)


#: How each kind of key is coerced from what vLLM-backend clients send (often strings).
_KIND_CONVERTERS: dict[str, Callable[[str, Any], Any]] = {
    "int": _to_int,
    "float": _to_float,
    "bool": _flag,
    "strings": _to_strings,
    "ints": _to_ints,
    "bias": _to_bias,
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


def reject_unknown_keys(data: Mapping[str, Any], known: tuple[str, ...], field: str = FIELD) -> None:
    """Refuse keys outside ``known`` (a typo must not fall back to a default silently)."""
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise InvalidInputError(
            f"{field}: unknown key(s) {', '.join(unknown)}; supported: {', '.join(known)}"
        )


def convert_value(key: str, value: Any) -> Any:
    """``value`` of sampling key ``key`` as ``SamplingParams`` holds it (None stays None)."""
    return None if value is None else _CONVERTERS[key](key, value)


def sampling_params_from_dict(
    data: Mapping[str, Any], default_max_tokens: int, max_tokens_limit: int
) -> SamplingParams:
    """Build and validate ``SamplingParams``; ``null`` values mean "use the default"."""
    reject_unknown_keys(data, SAMPLING_KEYS)
    values: dict[str, Any] = {"max_tokens": default_max_tokens}
    for key, value in data.items():
        if value is not None:
            values[key] = _CONVERTERS[key](key, value)
    params = SamplingParams(**values)
    params.validate(max_tokens_limit)
    return params
