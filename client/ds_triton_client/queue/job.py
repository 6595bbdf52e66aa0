"""Jobs and their results as JSON: parsed, validated and written without any broker or I/O.

The wire format is documented by ``schemas/job.schema.json`` and
``schemas/result.schema.json`` (shipped with the package). ``Job.parse`` checks
the same rules as the schema and names the field at fault, so an invalid job is
dead-lettered with an error a producer can act on.
"""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import numpy as np

from ds_triton_client._base import DEFAULT_EMBED_MODEL, DEFAULT_GENERATE_MODEL

Task = Literal["embed", "generate"]
Encoding = Literal["base64", "float"]
TASKS: tuple[Task, ...] = ("embed", "generate")
ENCODINGS: tuple[Encoding, ...] = ("base64", "float")

MAX_ID_LENGTH = 256
MAX_INPUTS = 1024
#: A NATS subject: dot-separated tokens without wildcards or whitespace.
SUBJECT = re.compile(r"^[^.\s*>]+(\.[^.\s*>]+)*$")
#: RFC 3339 date-time, with its offset (a deadline without one would depend on the worker's zone).
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
JOB_KEYS = frozenset(
    {"id", "task", "model", "inputs", "parameters", "encoding", "deadline", "reply_to", "metadata",
     "submitted_at", "timeout_s"}
)  # fmt: skip


class InvalidJobError(ValueError):
    """A job that can never run as written (the message names the field); it is dead-lettered."""


@dataclass(frozen=True)
class Job:
    """One unit of work: embed or generate from a list of inputs.

    Attributes:
        id: Unique, chosen by the producer; results and deduplication are keyed by it.
        task: ``embed`` or ``generate``.
        model: Served model name (default: the task's shipped model).
        inputs: Texts to embed, or prompts to complete (each prompt is one generation).
        parameters: Generation sampling keys, as ``Client.generate`` takes them.
        encoding: How embeddings come back: base64 of little-endian float32, or JSON floats.
        deadline: Unix time after which the job must not run (dead-lettered instead).
        reply_to: Subject the result is published on (default: the worker's).
        metadata: Any JSON object, returned unchanged in the result.
        submitted_at: Unix time the producer sent the job (end-to-end latency).
        timeout_s: Deadline of each inference call, retries within it included.
    """

    id: str
    task: Task
    inputs: tuple[str, ...]
    model: str = ""
    parameters: Mapping[str, Any] = field(default_factory=dict)
    encoding: Encoding = "base64"
    deadline: float | None = None
    reply_to: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    submitted_at: float | None = None
    timeout_s: float | None = None

    @property
    def model_name(self) -> str:
        return self.model or (DEFAULT_EMBED_MODEL if self.task == "embed" else DEFAULT_GENERATE_MODEL)

    def to_dict(self) -> dict[str, Any]:
        """The job as its JSON object (optional fields left out when unset)."""
        out: dict[str, Any] = {"id": self.id, "task": self.task, "inputs": list(self.inputs)}
        if self.model:
            out["model"] = self.model
        if self.parameters:
            out["parameters"] = dict(self.parameters)
        if self.task == "embed" and self.encoding != "base64":
            out["encoding"] = self.encoding
        if self.deadline is not None:
            out["deadline"] = self.deadline
        if self.reply_to:
            out["reply_to"] = self.reply_to
        if self.metadata:
            out["metadata"] = dict(self.metadata)
        if self.submitted_at is not None:
            out["submitted_at"] = self.submitted_at
        if self.timeout_s is not None:
            out["timeout_s"] = self.timeout_s
        return out

    def encode(self) -> bytes:
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    @classmethod
    def parse(cls, payload: bytes | str | Mapping[str, Any]) -> Job:
        """Read and validate one job.

        Raises:
            InvalidJobError: Not JSON, not an object, or a field breaks the schema (named).
        """
        raw = decode_object(payload, "job")
        unknown = sorted(set(raw) - JOB_KEYS)
        if unknown:
            raise InvalidJobError(f"unknown field(s) {unknown}; allowed: {sorted(JOB_KEYS)}")
        job_id = raw.get("id")
        if not isinstance(job_id, str) or not job_id or len(job_id) > MAX_ID_LENGTH:
            raise InvalidJobError(f"'id' must be a string of 1 to {MAX_ID_LENGTH} characters")
        task = raw.get("task")
        if task not in TASKS:
            raise InvalidJobError(f"'task' must be one of {list(TASKS)}, got {task!r}")
        model = raw.get("model", "")
        if not isinstance(model, str):
            raise InvalidJobError("'model' must be a string")
        inputs = raw.get("inputs")
        if not isinstance(inputs, list) or not 1 <= len(inputs) <= MAX_INPUTS:
            raise InvalidJobError(f"'inputs' must be a list of 1 to {MAX_INPUTS} strings")
        for i, text in enumerate(inputs):
            if not isinstance(text, str) or not text:
                raise InvalidJobError(f"'inputs[{i}]' must be a non-empty string")
        parameters = raw.get("parameters", {})
        if not isinstance(parameters, dict):
            raise InvalidJobError("'parameters' must be an object")
        if parameters and task == "embed":
            raise InvalidJobError("'parameters' apply to generate jobs only")
        if "encoding" in raw and task == "generate":
            raise InvalidJobError("'encoding' applies to embed jobs only")
        encoding = raw.get("encoding", "base64")
        if encoding not in ENCODINGS:
            raise InvalidJobError(f"'encoding' must be one of {list(ENCODINGS)}, got {encoding!r}")
        reply_to = raw.get("reply_to")
        if reply_to is not None and (not isinstance(reply_to, str) or not SUBJECT.match(reply_to)):
            raise InvalidJobError(f"'reply_to' must be a subject without wildcards, got {reply_to!r}")
        metadata = raw.get("metadata", {})
        if not isinstance(metadata, dict):
            raise InvalidJobError("'metadata' must be an object")
        timeout_s = _number(raw, "timeout_s", positive=True)
        return cls(
            id=job_id,
            task=task,
            inputs=tuple(inputs),
            model=model,
            parameters=parameters,
            encoding=encoding,
            deadline=parse_deadline(raw.get("deadline")),
            reply_to=reply_to,
            metadata=metadata,
            submitted_at=_number(raw, "submitted_at"),
            timeout_s=timeout_s,
        )


def decode_object(payload: bytes | str | Mapping[str, Any], what: str) -> dict[str, Any]:
    """A JSON object from bytes, text or a mapping (``InvalidJobError`` otherwise)."""
    if isinstance(payload, Mapping):
        return dict(payload)
    try:
        value = json.loads(payload)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidJobError(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise InvalidJobError(f"{what} must be a JSON object, got {type(value).__name__}")
    return value


def _number(raw: Mapping[str, Any], name: str, positive: bool = False) -> float | None:
    value = raw.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidJobError(f"'{name}' must be a number")
    if positive and value <= 0:
        raise InvalidJobError(f"'{name}' must be > 0")
    return float(value)


def parse_deadline(value: object) -> float | None:
    """A deadline as Unix seconds: a number, or an RFC 3339 date-time with its offset."""
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    if isinstance(value, str) and RFC3339.match(value):
        try:
            return datetime.fromisoformat(value).timestamp()
        except ValueError:
            pass
    raise InvalidJobError(
        f"'deadline' must be Unix seconds or an RFC 3339 date-time with an offset, got {value!r}"
    )


# --- results ---------------------------------------------------------------------------


@dataclass(frozen=True)
class JobFailure:
    """Why a job produced no outputs.

    Attributes:
        type: ``InvalidJob``, ``DeadlineExpired``, ``RetriesExhausted`` or a client error class.
        message: What went wrong, verbatim from the server where it answered.
        retryable: Whether the last failure was of a kind that is retried.
    """

    type: str
    message: str
    retryable: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "message": self.message, "retryable": self.retryable}


def encode_embeddings(matrix: np.ndarray, encoding: Encoding) -> list[Any]:
    """One entry per row: base64 of little-endian float32 bytes, or a list of floats."""
    rows = np.ascontiguousarray(matrix, dtype="<f4")
    if encoding == "float":
        return [row.tolist() for row in rows]
    return [base64.b64encode(row.tobytes()).decode("ascii") for row in rows]


def decode_embeddings(values: Sequence[Any], dim: int | None = None) -> np.ndarray:
    """The (rows, dim) float32 matrix of a result's ``embeddings`` (either encoding)."""
    rows = [
        np.frombuffer(base64.b64decode(v), dtype="<f4") if isinstance(v, str) else np.asarray(v, "<f4")
        for v in values
    ]
    if not rows:
        return np.zeros((0, dim or 0), dtype=np.float32)
    return np.stack(rows).astype(np.float32, copy=False)


@dataclass(frozen=True)
class JobResult:
    """What a worker publishes for one job (see ``schemas/result.schema.json``).

    Attributes:
        id: The job's id.
        task: The job's task (``None`` when the job could not be read).
        model: The model that ran it.
        outputs: ``{"embeddings": [...], "encoding": ..., "dim": n}`` or ``{"generations": [...]}``.
        error: Set when the job failed for good (it is also on the dead-letter subject).
        timings: ``queued_s``, ``run_s``, ``started_at``, ``finished_at`` (Unix seconds).
        attempts: Deliveries of the job up to this result.
        worker: ``host:pid`` of the worker.
        metadata: The job's metadata, unchanged.
    """

    id: str
    task: str | None
    model: str | None
    outputs: Mapping[str, Any] | None
    error: JobFailure | None
    timings: Mapping[str, float | None]
    attempts: int
    worker: str
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "ok": self.ok,
            "task": self.task,
            "model": self.model,
            "outputs": dict(self.outputs) if self.outputs is not None else None,
            "error": self.error.to_dict() if self.error else None,
            "timings": dict(self.timings),
            "attempts": self.attempts,
            "worker": self.worker,
            "metadata": dict(self.metadata),
        }

    def encode(self) -> bytes:
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    @classmethod
    def parse(cls, payload: bytes | str | Mapping[str, Any]) -> JobResult:
        """Read a published result (for collectors).

        Raises:
            InvalidJobError: Not a result object.
        """
        raw = decode_object(payload, "result")
        if not isinstance(raw.get("id"), str) or "ok" not in raw:
            raise InvalidJobError("result has no 'id' or 'ok'")
        error = raw.get("error")
        failure = None
        if isinstance(error, dict):
            failure = JobFailure(str(error.get("type", "")), str(error.get("message", "")),
                                 bool(error.get("retryable")))  # fmt: skip
        return cls(
            id=raw["id"],
            task=raw.get("task"),
            model=raw.get("model"),
            outputs=raw.get("outputs"),
            error=failure,
            timings=raw.get("timings") or {},
            attempts=int(raw.get("attempts") or 0),
            worker=str(raw.get("worker") or ""),
            metadata=raw.get("metadata") or {},
        )
