"""The job and result formats: the JSON Schemas in the package and the parser agree, and say why."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import jsonschema
import numpy as np
import pytest

from ds_triton_client.queue.job import (
    InvalidJobError,
    Job,
    JobFailure,
    JobResult,
    decode_embeddings,
    encode_embeddings,
)

SCHEMAS = resources.files("ds_triton_client.queue") / "schemas"


def schema(name: str) -> dict[str, Any]:
    return dict(json.loads((SCHEMAS / f"{name}.schema.json").read_text()))


def validator(name: str) -> jsonschema.Draft202012Validator:
    jsonschema.Draft202012Validator.check_schema(schema(name))
    return jsonschema.Draft202012Validator(schema(name), format_checker=jsonschema.FormatChecker())


VALID: list[dict[str, Any]] = [
    {"id": "a", "task": "embed", "inputs": ["x"]},
    {"id": "b", "task": "embed", "inputs": ["x", "y"], "encoding": "float", "model": "m",
     "reply_to": "jobs.results.run1", "metadata": {"row": 4}, "deadline": 1.5e9, "submitted_at": 1.0,
     "timeout_s": 2},
    {"id": "c", "task": "generate", "inputs": ["p"], "parameters": {"max_tokens": 3},
     "deadline": "2030-01-01T00:00:00+00:00"},
    {"id": "d", "task": "embed", "inputs": ["x"], "parameters": {}},
]  # fmt: skip

INVALID: list[tuple[Any, str]] = [
    ({"task": "embed", "inputs": ["x"]}, "'id'"),
    ({"id": "", "task": "embed", "inputs": ["x"]}, "'id'"),
    ({"id": "a" * 257, "task": "embed", "inputs": ["x"]}, "'id'"),
    ({"id": "a", "task": "classify", "inputs": ["x"]}, "'task'"),
    ({"id": "a", "task": "embed"}, "'inputs'"),
    ({"id": "a", "task": "embed", "inputs": []}, "'inputs'"),
    ({"id": "a", "task": "embed", "inputs": "x"}, "'inputs'"),
    ({"id": "a", "task": "embed", "inputs": ["x", ""]}, "'inputs[1]'"),
    ({"id": "a", "task": "embed", "inputs": [3]}, "'inputs[0]'"),
    ({"id": "a", "task": "embed", "inputs": ["x"], "parameters": {"top_k": 1}}, "generate jobs only"),
    ({"id": "a", "task": "generate", "inputs": ["x"], "encoding": "float"}, "embed jobs only"),
    ({"id": "a", "task": "embed", "inputs": ["x"], "encoding": "fp16"}, "'encoding'"),
    ({"id": "a", "task": "embed", "inputs": ["x"], "reply_to": "results.*"}, "'reply_to'"),
    ({"id": "a", "task": "embed", "inputs": ["x"], "reply_to": "a..b"}, "'reply_to'"),
    ({"id": "a", "task": "embed", "inputs": ["x"], "deadline": "tomorrow"}, "'deadline'"),
    ({"id": "a", "task": "embed", "inputs": ["x"], "deadline": "2030-01-01T00:00:00"}, "'deadline'"),
    ({"id": "a", "task": "embed", "inputs": ["x"], "timeout_s": 0}, "'timeout_s'"),
    ({"id": "a", "task": "embed", "inputs": ["x"], "metadata": [1]}, "'metadata'"),
    ({"id": "a", "task": "embed", "inputs": ["x"], "priority": 1}, "unknown field"),
]


@pytest.mark.parametrize("raw", VALID)
def test_valid_jobs_pass_both_the_schema_and_the_parser(raw: dict[str, Any]) -> None:
    validator("job").validate(raw)
    job = Job.parse(json.dumps(raw).encode())
    assert Job.parse(job.encode()) == job


@pytest.mark.parametrize(("raw", "named"), INVALID)
def test_invalid_jobs_fail_both_and_the_parser_names_the_field(raw: dict[str, Any], named: str) -> None:
    # A naive date-time has no offset: RFC 3339 (the schema's format) requires one too.
    assert not validator("job").is_valid(raw), raw
    with pytest.raises(InvalidJobError, match=named.replace("[", r"\[").replace("]", r"\]")):
        Job.parse(json.dumps(raw))


def test_the_schema_examples_are_valid_jobs() -> None:
    for example in schema("job")["examples"]:
        validator("job").validate(example)
        Job.parse(example)


def test_deadlines_are_unix_seconds_whichever_way_they_are_written() -> None:
    job = Job.parse({"id": "a", "task": "embed", "inputs": ["x"], "deadline": "2030-01-01T01:00:00+01:00"})
    assert job.deadline == 1893456000.0


@pytest.mark.parametrize("encoding", ["base64", "float"])
def test_embeddings_round_trip_exactly_in_both_encodings(encoding: str) -> None:
    matrix = np.random.default_rng(0).standard_normal((3, 384)).astype(np.float32)
    encoded = encode_embeddings(matrix, encoding)  # type: ignore[arg-type]
    np.testing.assert_array_equal(decode_embeddings(json.loads(json.dumps(encoded))), matrix)


def test_results_and_failures_match_the_result_schema() -> None:
    ok = JobResult(id="a", task="embed", model="m", error=None, attempts=1, worker="h:1",
                   outputs={"encoding": "base64", "dim": 2,
                            "embeddings": encode_embeddings(np.ones((1, 2), np.float32), "base64")},
                   timings={"queued_s": 0.1, "run_s": 0.2, "started_at": 1.0, "finished_at": 1.2},
                   metadata={"row": 1})  # fmt: skip
    failed = JobResult(id="b", task=None, model=None, outputs=None, timings={}, attempts=3, worker="h:1",
                       error=JobFailure("RetriesExhausted", "3 attempts", True))  # fmt: skip
    generated = JobResult(id="c", task="generate", model="g", error=None, attempts=1, worker="h:1",
                          outputs={"generations": [{"text": "hi", "num_input_tokens": 2,
                                                    "num_output_tokens": 1, "finish_reason": "length"}]},
                          timings={})  # fmt: skip
    for result in (ok, failed, generated):
        payload = json.loads(result.encode())
        validator("result").validate(payload)
        assert JobResult.parse(result.encode()) == result


def test_dead_letters_match_their_schema() -> None:
    letter = {"id": None, "error": JobFailure("InvalidJob", "not JSON").to_dict(), "attempts": 1,
              "worker": "h:1", "dead_lettered_at": 1.0, "job": None, "raw": "{"}  # fmt: skip
    validator("dead-letter").validate(letter)
