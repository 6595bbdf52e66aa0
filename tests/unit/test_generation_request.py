"""Parsing and validation of generation requests (the vLLM-backend interface), no server."""

from __future__ import annotations

import json

import pytest

from ds_triton.errors import InvalidInputError
from ds_triton.generation.params import SamplingParams, sampling_params_from_dict
from ds_triton.generation.request import GenerationRequest, RawGenerationInputs
from ds_triton.spec import GenerationSpec, ModelSpec, SpecError

OPTIONS = GenerationSpec(max_tokens_limit=64, default_max_tokens=16)


def parse(
    text: object = b"Hello",
    flags: dict[str, bool] | None = None,
    sampling: object = None,
    parameters: str = "",
) -> GenerationRequest:
    raw = RawGenerationInputs(
        text_input=None if text is None else [text],
        flags=flags or {},
        sampling_parameters=sampling,
        parameters=parameters,
    )
    return GenerationRequest.from_raw(raw, OPTIONS)


def test_defaults_follow_vllm() -> None:
    request = parse()
    assert request.prompt == "Hello"
    assert request.stream is False
    # Non-streaming output starts with the prompt unless excluded.
    assert request.exclude_input_in_output is False
    assert request.sampling == SamplingParams(max_tokens=16)


def test_streaming_excludes_the_prompt_by_default() -> None:
    request = parse(flags={"stream": True})
    assert request.stream and request.exclude_input_in_output


def test_string_values_are_coerced_like_the_vllm_sample_client() -> None:
    sampling = json.dumps({"temperature": "0.1", "top_p": "0.95", "max_tokens": "40"})
    params = parse(sampling=sampling.encode()).sampling
    assert (params.temperature, params.top_p, params.max_tokens) == (0.1, 0.95, 40)


def test_request_parameters_carry_stream_and_sampling_for_http_generate() -> None:
    parameters = json.dumps({"stream": True, "temperature": 0, "max_tokens": 8, "stop": "x"})
    request = parse(parameters=parameters)
    assert request.stream
    assert request.sampling.greedy and request.sampling.max_tokens == 8
    assert request.sampling.stop == ("x",)


def test_the_sampling_tensor_wins_over_request_parameters() -> None:
    request = parse(
        sampling=json.dumps({"max_tokens": 5}).encode(),
        parameters=json.dumps({"max_tokens": "9", "temperature": "0.5"}),
    )
    assert request.sampling.max_tokens == 5
    assert request.sampling.temperature == 1.0


def test_tensor_flags_win_over_request_parameters() -> None:
    request = parse(flags={"stream": False}, parameters=json.dumps({"stream": True}))
    assert request.stream is False


def test_null_values_mean_default() -> None:
    assert parse(sampling=b'{"max_tokens": null, "seed": null}').sampling.max_tokens == 16


@pytest.mark.parametrize(
    ("kwargs", "names"),
    [
        ({"sampling": b"{not json"}, "sampling_parameters is not valid JSON"),
        ({"sampling": b"[1, 2]"}, "sampling_parameters must be a JSON object"),
        ({"sampling": b"\xff\xfe"}, "sampling_parameters is not valid UTF-8"),
        ({"sampling": b'{"max_token": 3}'}, "unknown key(s) max_token"),
        ({"parameters": '{"bogus": 1}'}, "parameters: unknown key(s) bogus"),
        ({"sampling": b'{"max_tokens": -1}'}, "sampling_parameters.max_tokens"),
        ({"sampling": b'{"max_tokens": 0}'}, "sampling_parameters.max_tokens"),
        ({"sampling": b'{"max_tokens": 65}'}, "sampling_parameters.max_tokens"),
        ({"sampling": b'{"max_tokens": "many"}'}, "sampling_parameters.max_tokens"),
        ({"sampling": b'{"temperature": -0.5}'}, "sampling_parameters.temperature"),
        ({"sampling": b'{"temperature": "NaN"}'}, "sampling_parameters.temperature"),
        ({"sampling": b'{"top_p": 1.5}'}, "sampling_parameters.top_p"),
        ({"sampling": b'{"top_p": 0}'}, "sampling_parameters.top_p"),
        ({"sampling": b'{"top_k": -2}'}, "sampling_parameters.top_k"),
        ({"sampling": b'{"seed": -1}'}, "sampling_parameters.seed"),
        ({"sampling": b'{"stop": [1]}'}, "sampling_parameters.stop"),
        ({"sampling": b'{"stop": [""]}'}, "sampling_parameters.stop"),
        ({"sampling": b'{"ignore_eos": "maybe"}'}, "sampling_parameters.ignore_eos"),
        ({"sampling": b'{"min_tokens": 99}'}, "sampling_parameters.min_tokens"),
        ({"text": b""}, "input 'text_input' must be a non-empty prompt"),
        ({"text": b"   "}, "input 'text_input' must be a non-empty prompt"),
        ({"text": b"\xc3\x28 bad"}, "input 'text_input' is not valid UTF-8"),
        ({"text": None}, "missing input 'text_input'"),
        ({"text": 3}, "input 'text_input' must be BYTES"),
        ({"flags": {"stream": True, "exclude_input_in_output": False}}, "exclude_input_in_output"),
        ({"parameters": '{"stream": "yes"}'}, "parameters.stream"),
    ],
)
def test_bad_input_names_the_field(kwargs: dict[str, object], names: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        parse(**kwargs)  # type: ignore[arg-type]
    assert names in str(caught.value)


def test_more_than_one_prompt_is_rejected() -> None:
    raw = RawGenerationInputs(text_input=[b"a", b"b"])
    with pytest.raises(InvalidInputError, match="exactly one prompt"):
        GenerationRequest.from_raw(raw, OPTIONS)


def test_sampling_params_defaults_and_limits() -> None:
    params = sampling_params_from_dict({"top_k": "-1", "ignore_eos": "true"}, 16, 64)
    assert params.top_k == -1 and params.ignore_eos
    assert sampling_params_from_dict({"max_tokens": 2.0}, 16, 64).max_tokens == 2


def test_generation_spec_validates_its_keys() -> None:
    base = {"name": "m", "task": "generation", "checkpoint": "c"}
    spec = ModelSpec.from_dict({**base, "generation": {"max_queued_requests": 0}})
    assert spec.generation_options.max_queued_requests == 0
    with pytest.raises(SpecError, match="max_queued_requests"):
        ModelSpec.from_dict({**base, "generation": {"max_queued_requests": -1}})
    with pytest.raises(SpecError, match="unknown key"):
        ModelSpec.from_dict({**base, "generation": {"max_batch": 3}})
