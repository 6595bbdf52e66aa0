"""The one declaration of each task's interface, and that server, checker and client all follow it."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import fields
from typing import Any

import pytest

from ds_triton.errors import InvalidInputError as ServerInvalidInput
from ds_triton.generation.params import SamplingParams, sampling_params_from_dict
from ds_triton.generation.request import FLAG_INPUTS
from ds_triton.repository.render import interface_of, render_config
from ds_triton.spec import ModelSpec
from ds_triton_client.codec import fields_to_tensors, generation_fields, sampling_json
from ds_triton_client.errors import InvalidInputError as ClientInvalidInput
from ds_triton_interface import (
    GENERATION,
    SAMPLING_KEYS,
    TEXT_INPUT,
    Range,
    SamplingKey,
    TaskInterface,
    TensorSpec,
    embedding_interface,
    task_interface,
)


def test_the_interface_module_needs_only_the_standard_library() -> None:
    code = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "import ds_triton_interface\n"
        "roots = {m.split('.')[0] for m in set(sys.modules) - before}\n"
        "print(' '.join(sorted(roots - set(sys.stdlib_module_names) - {'ds_triton_interface'})))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


def test_every_sampling_key_the_server_takes_the_client_sends() -> None:
    # The client once lacked min_tokens, which the server accepts.
    sent = json.loads(sampling_json({"min_tokens": 2, "max_tokens": 4}))
    assert sent == {"min_tokens": 2, "max_tokens": 4}
    assert set(SAMPLING_KEYS) <= {f.name for f in fields(SamplingParams)}


# One valid and one invalid value of each declared key, as a client would send them.
GOOD_AND_BAD: dict[str, tuple[Any, Any]] = {
    "max_tokens": (8, 0),
    "temperature": (0.5, -0.1),
    "top_p": (1, 0),
    "top_k": (-1, -2),
    "seed": (0, -1),
    "stop": (["\n"], [""]),
    "ignore_eos": (True, 1),
    "min_tokens": (0, -1),
    "min_p": (0.05, 1.5),
    "stop_token_ids": ([2, 7], [-1]),
    "include_stop_str_in_output": (True, "yes"),
    "repetition_penalty": (1.2, 0),
    "presence_penalty": (-2, 2.5),
    "frequency_penalty": (0.5, -3),
    "logit_bias": ({"17": -100, 3: 2.5}, {"17": 101}),
    "allowed_token_ids": ([1, 2], []),
    "bad_words": (["no"], [""]),
    "logprobs": (5, 21),
    "prompt_logprobs": (0, -1),
    "skip_special_tokens": (False, "no"),
    "spaces_between_special_tokens": (True, "no"),
    "n": (1, 0),
    "best_of": (1, 0),
}


BOOLEAN_KEYS = {k for k, key in SAMPLING_KEYS.items() if key.kind == "bool"}


def test_each_key_has_a_good_and_a_bad_example() -> None:
    assert set(GOOD_AND_BAD) == set(SAMPLING_KEYS)


@pytest.mark.parametrize("key", sorted(GOOD_AND_BAD))
def test_client_and_server_agree_on_each_key(key: str) -> None:
    good, bad = GOOD_AND_BAD[key]
    sampling_json({key: good})
    sampling_params_from_dict({key: good}, default_max_tokens=16, max_tokens_limit=64)
    with pytest.raises(ClientInvalidInput, match=key):
        sampling_json({key: bad})
    if key in BOOLEAN_KEYS:
        return  # the server also takes 0/1 and "true"/"false", as vLLM-backend clients send them
    with pytest.raises(ServerInvalidInput, match=f"sampling_parameters.{key}"):
        sampling_params_from_dict({key: bad}, default_max_tokens=16, max_tokens_limit=64)


@pytest.mark.parametrize(
    ("value", "inside"),
    [(0, False), (1e-9, True), (1, True), (1.01, False), (float("nan"), False), (True, True)],
)
def test_ranges(value: float, inside: bool) -> None:
    assert (value in Range(0, 1, low_open=True)) is inside
    assert str(Range(0, 1, low_open=True)) == "in (0, 1]"
    assert str(Range(low=-1)) == ">= -1"


def test_a_new_key_is_one_entry() -> None:
    key = SamplingKey("min_p", "float", "drop tokens below min_p x the top probability", Range(0, 1))
    assert key.problem(0.05) is None
    assert key.problem(2) == "must be in [0, 1]"
    assert key.problem("0.1") == "must be a number"


def test_generation_request_flags_come_from_the_optional_outputs() -> None:
    flags = {o.requested_by for o in GENERATION.outputs if o.requested_by}
    assert flags == {
        "return_finish_reason", "return_cumulative_logprob", "return_logprobs",
        "return_num_input_tokens", "return_num_output_tokens",
    }  # fmt: skip
    assert flags <= set(GENERATION.flag_inputs) == set(FLAG_INPUTS)
    assert all(GENERATION.input(f).optional for f in flags)


def test_client_requests_use_only_declared_inputs_with_their_types() -> None:
    tensors = fields_to_tensors(generation_fields("hi", True, {"max_tokens": 2}), batched=False)
    declared = {t.name: t for t in GENERATION.inputs}
    for tensor in tensors:
        assert tensor.datatype == declared[tensor.name].datatype
    assert TEXT_INPUT in {t.name for t in tensors}


@pytest.mark.parametrize(("task", "dimension"), [("embedding", 384), ("generation", None)])
def test_rendered_configs_declare_exactly_the_interface(task: str, dimension: int | None) -> None:
    data: dict[str, Any] = {"name": "m", "task": task, "checkpoint": "ckpt"}
    spec = ModelSpec.from_dict(data)
    config = render_config(spec, embedding_dimension=dimension)
    expected = task_interface(task, dimension)
    actual = interface_of(config)
    strip = lambda ts: tuple(TensorSpec(t.name, t.data_type, t.dims, t.optional) for t in ts)  # noqa: E731
    assert strip(actual.inputs) == strip(expected.inputs)
    assert strip(actual.outputs) == strip(expected.outputs)
    assert (actual.decoupled, actual.batched) == (expected.decoupled, expected.batched)


def test_unknown_task_and_missing_dimension_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown task"):
        task_interface("rerank")
    with pytest.raises(ValueError, match="hidden size"):
        task_interface("embedding")
    assert isinstance(embedding_interface(8), TaskInterface)
