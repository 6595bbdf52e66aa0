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
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["int", "float", "bool", "strings", "ints", "bias"]

#: Most top tokens ``logprobs`` and ``prompt_logprobs`` may ask for (vLLM's default ``max_logprobs``).
MAX_LOGPROBS = 20


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # bool is an int subclass


def _is_number(value: Any) -> bool:
    return _is_int(value) or isinstance(value, float)


def _is_strings(value: Any) -> bool:
    return isinstance(value, str) or (
        isinstance(value, list | tuple) and all(isinstance(item, str) for item in value)
    )


def _is_ints(value: Any) -> bool:
    return isinstance(value, list | tuple) and all(_is_int(item) for item in value)


def _is_token_id(value: Any) -> bool:
    """A token id, or its decimal string (JSON object keys are strings)."""
    if isinstance(value, str):
        try:
            int(value)
        except ValueError:
            return False
        return True
    return _is_int(value)


def _is_bias(value: Any) -> bool:
    return isinstance(value, Mapping) and all(
        _is_token_id(token) and _is_number(bias) for token, bias in value.items()
    )


#: Each kind: how to tell a value of it, and how to say what it must be.
KINDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "int": (_is_int, "an integer"),
    "float": (_is_number, "a number"),
    "bool": (lambda value: isinstance(value, bool), "true or false"),
    "strings": (_is_strings, "a string or a list of strings"),
    "ints": (_is_ints, "a list of token ids"),
    "bias": (_is_bias, "an object of token id -> number"),
}


def _numbers(kind: str, value: Any) -> Iterable[Any]:
    """The numbers of ``value`` a key's range applies to (items of a list, values of a bias)."""
    if kind == "ints":
        return value
    if kind == "bias":
        return value.values()
    return (value,)


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
        range: Allowed values of a numeric key, of each item of a token-id list, of each
            value of a bias object (None: any).
        nonempty_items: A string (list) key whose strings must not be empty.
        nonempty: A list key that must not be empty.
        hf: The Hugging Face ``generate``/tokenizer equivalent ("" when there is none).
    """

    name: str
    kind: Kind
    help: str
    range: Range | None = None
    nonempty_items: bool = False
    nonempty: bool = False
    hf: str = ""

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is not allowed for this key (``"must be ..."``), or None when it is."""
        accepts, type_name = KINDS[self.kind]
        if not accepts(value):
            return f"must be {type_name}"
        if self.range is not None:
            outside = [number for number in _numbers(self.kind, value) if number not in self.range]
            if outside:
                if self.kind in ("int", "float"):
                    return f"must be {self.range}"
                part = "values" if self.kind == "bias" else "token ids"
                return f"must have {part} {self.range} (not {outside[0]})"
        if self.nonempty and not value:
            return "must not be empty"
        if self.nonempty_items and any(not item for item in ([value] if isinstance(value, str) else value)):
            return "must not contain empty strings"
        return None


def _keys(*keys: SamplingKey) -> dict[str, SamplingKey]:
    return {key.name: key for key in keys}


#: Every key the generation model accepts in ``sampling_parameters`` (vLLM's names and meanings).
SAMPLING_KEYS: dict[str, SamplingKey] = _keys(
    SamplingKey("max_tokens", "int", "most tokens to generate", Range(low=1), hf="max_new_tokens"),
    SamplingKey("temperature", "float", "0 = greedy; higher flattens the distribution", Range(low=0),
                hf="temperature (0: do_sample=False)"),
    SamplingKey("top_p", "float", "nucleus sampling mass", Range(0, 1, low_open=True), hf="top_p"),
    SamplingKey("top_k", "int", "keep the k most likely tokens; 0 or -1 keeps all", Range(low=-1),
                hf="top_k"),
    SamplingKey("min_p", "float", "drop tokens less likely than min_p x the most likely one",
                Range(0, 1), hf="min_p"),
    SamplingKey("seed", "int", "seed of this request's own generator", Range(0, 2**63 - 1)),
    SamplingKey("stop", "strings", "strings that end generation (not returned)", nonempty_items=True,
                hf="stop_strings (HF keeps the string in the output)"),
    SamplingKey("stop_token_ids", "ints", "token ids that end generation (text not returned)",
                Range(low=0), hf="eos_token_id=[...]"),
    SamplingKey("include_stop_str_in_output", "bool", "return the matched stop string / stop token's text"),
    SamplingKey("ignore_eos", "bool", "keep generating after the EOS token"),
    SamplingKey("min_tokens", "int", "EOS, stop tokens and stop strings cannot end the output before this",
                Range(low=0), hf="min_new_tokens"),
    SamplingKey("repetition_penalty", "float", "> 1 discourages tokens of the prompt and output",
                Range(low=0, low_open=True), hf="repetition_penalty"),
    SamplingKey("presence_penalty", "float", "subtracted once from each token already in the output",
                Range(-2, 2)),
    SamplingKey("frequency_penalty", "float", "subtracted per occurrence of a token in the output",
                Range(-2, 2)),
    SamplingKey("logit_bias", "bias", "token id -> bias added to its logit", Range(-100, 100),
                hf="sequence_bias={(id,): bias}"),
    SamplingKey("allowed_token_ids", "ints", "only these tokens may be generated", Range(low=0),
                nonempty=True, hf="prefix_allowed_tokens_fn"),
    SamplingKey("bad_words", "strings", "words that are never generated", nonempty_items=True,
                hf="bad_words_ids"),
    SamplingKey("logprobs", "int", "log-probabilities of each generated token and its N best others",
                Range(0, MAX_LOGPROBS), hf="output_logits / output_scores, log_softmax"),
    SamplingKey("prompt_logprobs", "int", "log-probabilities of each prompt token and its N best others",
                Range(0, MAX_LOGPROBS), hf="log_softmax of the forward pass's logits"),
    SamplingKey("skip_special_tokens", "bool", "leave special tokens out of the text (default true)",
                hf="decode(skip_special_tokens=...)"),
    SamplingKey("spaces_between_special_tokens", "bool",
                "spaces around kept special tokens (default true)",
                hf="decode(spaces_between_special_tokens=...) of transformers 4 Python tokenizers"),
    SamplingKey("n", "int", "sequences per request: only 1", Range(low=1), hf="num_return_sequences"),
    SamplingKey("best_of", "int", "candidates per request: only 1", Range(low=1)),
)  # fmt: skip
