"""Model interfaces as data: build request tensors/fields, read responses (no I/O).

The names, types and sampling keys come from ``ds_triton_interface`` (the server's
own declaration). ``text_embedding``: input ``text`` BYTES [n, 1] → ``embedding``
FP32 [n, dim]. ``text_generation`` (the Triton vLLM-backend interface, decoupled):
``text_input``, ``stream``, ``sampling_parameters`` (JSON) and request flags →
``text_output`` plus token counts, one response per piece when streaming.
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
    return {
        interface.TEXT_INPUT: prompt,
        interface.STREAM: stream,
        interface.SAMPLING_PARAMETERS: sampling_json(sampling),
        interface.EXCLUDE_INPUT_IN_OUTPUT: True,
        interface.request_flag(interface.FINISH_REASON): True,
        interface.request_flag(interface.NUM_INPUT_TOKENS): True,
        interface.request_flag(interface.NUM_OUTPUT_TOKENS): True,
    }


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


@dataclass
class GenerationPiece:
    """One response of a generation: new text and the token counts it reports."""

    text: str
    num_input_tokens: int | None = None
    num_output_tokens: int | None = None
    finish_reason: str | None = None


@dataclass
class GenerationResult:
    """A finished generation.

    Attributes:
        text: The generated text (the prompt excluded).
        num_input_tokens: Prompt tokens as counted by the server.
        num_output_tokens: Generated tokens as counted by the server.
        finish_reason: Why generation stopped (``length``, ``stop``), when the model says.
        endpoint: The endpoint that served it.
    """

    text: str
    num_input_tokens: int | None
    num_output_tokens: int | None
    finish_reason: str | None = None
    endpoint: str | None = None
    pieces: int = field(default=0, repr=False)

    def as_dict(self) -> dict[str, object]:
        return {
            "text": self.text,
            "num_input_tokens": self.num_input_tokens,
            "num_output_tokens": self.num_output_tokens,
            "finish_reason": self.finish_reason,
        }


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
    return GenerationPiece(
        str(text),
        int(n_in) if n_in is not None else None,
        int(n_out) if n_out is not None else None,
        str(reason) if reason else None,
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
    count = 0
    for piece in pieces:
        count += 1
        texts.append(piece.text)
        if piece.num_input_tokens is not None:
            n_in = piece.num_input_tokens
        if piece.num_output_tokens is not None:
            n_out = (n_out or 0) + piece.num_output_tokens
        reason = piece.finish_reason or reason
    return GenerationResult("".join(texts), n_in, n_out, reason, endpoint, count)


def normalize_stats(value: Any, key: str = "") -> Any:
    """Statistics with counters as ints (gRPC's JSON writes uint64 as strings)."""
    if isinstance(value, dict):
        return {k: normalize_stats(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [normalize_stats(v, key) for v in value]
    if isinstance(value, str) and value.isdigit() and key not in ("version", "name"):
        return int(value)
    return value
