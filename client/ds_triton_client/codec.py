"""Model interfaces as data: build request tensors/fields, read responses (no I/O).

The names, types and sampling keys come from ``ds_triton_interface`` (the server's
own declaration). ``text_embedding``: input ``text`` BYTES [n, 1] → ``embedding``
FP32 [n, dim]. ``text_generation`` (the Triton vLLM-backend interface, decoupled):
``text_input``, ``stream``, ``sampling_parameters`` (JSON) and request flags →
``text_output`` plus token counts (and log-probabilities when ``logprobs`` or
``prompt_logprobs`` is asked for), one response per piece when streaming.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import ds_triton_interface as interface
from ds_triton_client.errors import InvalidInputError

EMBED_INPUT = interface.EMBED_TEXT
EMBED_OUTPUT = interface.EMBED_EMBEDDING
_EMBED_DATATYPE = interface.embedding_interface(1).input(interface.EMBED_TEXT).datatype


@dataclass(frozen=True)
class Tensor:
    """One named input tensor, protocol-neutral."""

    name: str
    data: np.ndarray
    datatype: str


def embedding_inputs(texts: Sequence[str]) -> list[Tensor]:
    """The ``text`` tensor [n, 1] for a chunk of texts.

    Raises:
        InvalidInputError: A text is not a ``str`` (names its position).
    """
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise InvalidInputError(f"texts[{i}] must be str, got {type(text).__name__}")
    data = np.array([t.encode("utf-8") for t in texts], dtype=np.object_).reshape(-1, 1)
    return [Tensor(EMBED_INPUT, data, _EMBED_DATATYPE)]


def embedding_output(outputs: Mapping[str, np.ndarray], expected_rows: int) -> np.ndarray:
    """The ``embedding`` output as float32 (rows, dim), checked against the request size."""
    if EMBED_OUTPUT not in outputs:
        raise InvalidInputError(f"response has no {EMBED_OUTPUT!r} output (is this an embedding model?)")
    array = np.asarray(outputs[EMBED_OUTPUT], dtype=np.float32)
    if array.ndim != 2 or array.shape[0] != expected_rows:
        raise InvalidInputError(f"{EMBED_OUTPUT!r} has shape {array.shape}, expected ({expected_rows}, dim)")
    return array


def chunk_bounds(total: int, size: int) -> list[tuple[int, int]]:
    """``[start, end)`` slices of at most ``size`` rows covering ``range(total)`` in order."""
    if size < 1:
        raise ValueError("chunk size must be >= 1")
    return [(start, min(start + size, total)) for start in range(0, total, size)]


def sampling_json(sampling: Mapping[str, Any]) -> str:
    """Check sampling keyword arguments against the model's declared keys; encode them as JSON.

    ``None`` values are left out (the server's default applies).

    Raises:
        InvalidInputError: Unknown key, wrong type or out of range (the message names the key).
    """
    clean: dict[str, Any] = {}
    for name, value in sampling.items():
        if value is None:
            continue
        key = interface.SAMPLING_KEYS.get(name)
        if key is None:
            raise InvalidInputError(
                f"unknown sampling parameter {name!r}; allowed: {sorted(interface.SAMPLING_KEYS)}"
            )
        problem = key.problem(value)
        if problem:
            raise InvalidInputError(f"sampling parameter {name!r} {problem}, got {value!r}")
        if isinstance(value, Mapping):
            value = {str(k): v for k, v in value.items()}  # JSON keys are strings (logit_bias)
        clean[name] = list(value) if isinstance(value, tuple) else value
    return json.dumps(clean, sort_keys=True)


def generation_fields(prompt: str, stream: bool, sampling: Mapping[str, Any]) -> dict[str, str | bool]:
    """Named inputs of one generation request (values become BYTES or BOOL tensors)."""
    if not isinstance(prompt, str) or not prompt:
        raise InvalidInputError("prompt must be a non-empty str")
    fields: dict[str, str | bool] = {
        interface.TEXT_INPUT: prompt,
        interface.STREAM: stream,
        interface.SAMPLING_PARAMETERS: sampling_json(sampling),
        interface.EXCLUDE_INPUT_IN_OUTPUT: True,
        interface.request_flag(interface.FINISH_REASON): True,
        interface.request_flag(interface.NUM_INPUT_TOKENS): True,
        interface.request_flag(interface.NUM_OUTPUT_TOKENS): True,
    }
    if sampling.get("logprobs") is not None:
        fields[interface.request_flag(interface.LOGPROBS)] = True
        fields[interface.request_flag(interface.CUMULATIVE_LOGPROB)] = True
    return fields


def fields_to_tensors(fields: Mapping[str, str | bool], batched: bool) -> list[Tensor]:
    """Tensors for generation fields, typed as the interface declares: [1, 1] when batched, else [1]."""
    shape = (1, 1) if batched else (1,)
    tensors = []
    for name, value in fields.items():
        datatype = interface.GENERATION.input(name).datatype
        if datatype == "BOOL":
            data: np.ndarray = np.array([bool(value)], dtype=np.bool_).reshape(shape)
        else:
            data = np.array([str(value).encode("utf-8")], dtype=np.object_).reshape(shape)
        tensors.append(Tensor(name, data, datatype))
    return tensors


@dataclass(frozen=True)
class Candidate:
    """A token and its log-probability at one position; ``rank`` 1 is the most likely."""

    token_id: int
    text: str
    logprob: float
    rank: int


@dataclass(frozen=True)
class TokenLogprob:
    """One position of a generation (or its prompt): the token there and the most likely ones.

    Attributes:
        token: The generated (or prompt) token. Its ``text`` is what it added to the output.
        listed: Every token the server listed at this position, most likely first: the
            ``logprobs`` best ones, and ``token`` (last) when it ranks lower.
    """

    token: Candidate
    listed: tuple[Candidate, ...] = ()

    @classmethod
    def from_vllm(cls, entry: Mapping[str, Mapping[str, Any]]) -> TokenLogprob:
        """Read one entry of the vLLM backend's format: the chosen token first, then the top ones."""
        candidates = [
            Candidate(int(token), str(value["decoded_token"]), float(value["logprob"]), int(value["rank"]))
            for token, value in entry.items()
        ]
        return cls(candidates[0], tuple(sorted(candidates, key=lambda c: c.rank)))

    def as_dict(self) -> dict[str, Any]:
        def one(c: Candidate) -> dict[str, Any]:
            return {"token_id": c.token_id, "text": c.text, "logprob": c.logprob, "rank": c.rank}

        return {**one(self.token), "listed": [one(c) for c in self.listed]}


def _read_logprobs(value: Any) -> list[TokenLogprob | None] | None:
    """A ``logprobs``/``prompt_logprobs`` output (JSON text) as entries; None when absent or null."""
    text = _scalar(value)
    if text is None:
        return None
    data = json.loads(text)
    if data is None:
        return None
    return [None if entry is None else TokenLogprob.from_vllm(entry) for entry in data]


@dataclass
class GenerationPiece:
    """One response of a generation: new text, the token counts and log-probabilities it reports,
    and (on the last response only) why generation stopped."""

    text: str
    num_input_tokens: int | None = None
    num_output_tokens: int | None = None
    finish_reason: str | None = None
    logprobs: list[TokenLogprob | None] | None = None
    cumulative_logprob: float | None = None
    prompt_logprobs: list[TokenLogprob | None] | None = None


@dataclass
class GenerationResult:
    """A finished generation.

    Attributes:
        text: The generated text (the prompt excluded).
        num_input_tokens: Prompt tokens as counted by the server.
        num_output_tokens: Generated tokens as counted by the server.
        finish_reason: Why generation stopped (``length``, ``stop``), when the model says.
        endpoint: The endpoint that served it.
        logprobs: Per generated token, its log-probability and the ``logprobs`` most likely
            tokens (when the ``logprobs`` sampling key was given); their texts spell ``text``.
        cumulative_logprob: The sum of the generated tokens' log-probabilities (same condition).
        prompt_logprobs: Per prompt token, the same (``prompt_logprobs`` key); the first is
            None, as nothing precedes it.
    """

    text: str
    num_input_tokens: int | None
    num_output_tokens: int | None
    finish_reason: str | None = None
    endpoint: str | None = None
    pieces: int = field(default=0, repr=False)
    logprobs: list[TokenLogprob] | None = None
    cumulative_logprob: float | None = None
    prompt_logprobs: list[TokenLogprob | None] | None = None

    def as_dict(self) -> dict[str, object]:
        data: dict[str, object] = {
            "text": self.text,
            "num_input_tokens": self.num_input_tokens,
            "num_output_tokens": self.num_output_tokens,
            "finish_reason": self.finish_reason,
        }
        if self.logprobs is not None:
            data["logprobs"] = [entry.as_dict() for entry in self.logprobs]
            data["cumulative_logprob"] = self.cumulative_logprob
        if self.prompt_logprobs is not None:
            data["prompt_logprobs"] = [None if e is None else e.as_dict() for e in self.prompt_logprobs]
        return data


def _scalar(value: Any) -> Any:
    """First element of a tensor/list, or the value itself (JSON answers are scalars)."""
    if isinstance(value, np.ndarray):
        value = value.reshape(-1)[0] if value.size else None
    elif isinstance(value, list):
        value = value[0] if value else None
    if isinstance(value, bytes | np.bytes_):
        return bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, np.generic):
        return value.item()
    return value


def generation_piece(outputs: Mapping[str, Any]) -> GenerationPiece:
    """Read one generation response (tensors from gRPC, JSON from HTTP) into a piece."""
    text = _scalar(outputs.get(interface.TEXT_OUTPUT, "")) or ""
    n_in = _scalar(outputs.get(interface.NUM_INPUT_TOKENS))
    n_out = _scalar(outputs.get(interface.NUM_OUTPUT_TOKENS))
    reason = _scalar(outputs.get(interface.FINISH_REASON))
    cumulative = _scalar(outputs.get(interface.CUMULATIVE_LOGPROB))
    return GenerationPiece(
        str(text),
        int(n_in) if n_in is not None else None,
        int(n_out) if n_out is not None else None,
        # vLLM's interface writes str(None), "None", on every response before the last.
        str(reason) if reason and reason != "None" else None,
        _read_logprobs(outputs.get(interface.LOGPROBS)),
        float(cumulative) if cumulative is not None else None,
        _read_logprobs(outputs.get(interface.PROMPT_LOGPROBS)),
    )


def combine_pieces(pieces: Iterable[GenerationPiece], endpoint: str | None = None) -> GenerationResult:
    """Join the pieces of one generation: texts concatenated, output tokens summed.

    The vLLM interface reports output tokens per response (the delta), so the
    total is the sum; the prompt count is the same in every response that has it.
    """
    texts: list[str] = []
    n_in: int | None = None
    n_out: int | None = None
    reason: str | None = None
    logprobs: list[TokenLogprob] | None = None
    cumulative: float | None = None
    prompt_logprobs: list[TokenLogprob | None] | None = None
    count = 0
    for piece in pieces:
        count += 1
        texts.append(piece.text)
        if piece.num_input_tokens is not None:
            n_in = piece.num_input_tokens
        if piece.num_output_tokens is not None:
            n_out = (n_out or 0) + piece.num_output_tokens
        reason = piece.finish_reason or reason
        if piece.logprobs is not None:
            logprobs = (logprobs or []) + [e for e in piece.logprobs if e is not None]
        if piece.cumulative_logprob is not None:
            cumulative = piece.cumulative_logprob  # a running sum: the last one covers all
        prompt_logprobs = prompt_logprobs or piece.prompt_logprobs
    result = GenerationResult("".join(texts), n_in, n_out, reason, endpoint, count)
    result.logprobs = logprobs
    result.cumulative_logprob = cumulative if logprobs is not None else None
    result.prompt_logprobs = prompt_logprobs
    return result


def normalize_stats(value: Any, key: str = "") -> Any:
    """Statistics with counters as ints (gRPC's JSON writes uint64 as strings)."""
    if isinstance(value, dict):
        return {k: normalize_stats(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [normalize_stats(v, key) for v in value]
    if isinstance(value, str) and value.isdigit() and key not in ("version", "name"):
        return int(value)
    return value
