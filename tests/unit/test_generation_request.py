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


def test_sampling_keys_sent_both_ways_must_agree() -> None:
    # The vLLM sample client sends the same values as the tensor and as request parameters.
    request = parse(
        sampling=json.dumps({"max_tokens": "5", "temperature": 0.5}).encode(),
        parameters=json.dumps({"max_tokens": 5, "temperature": "0.5", "stream": False}),
    )
    assert (request.sampling.max_tokens, request.sampling.temperature) == (5, 0.5)
    # Anything else would be dropped silently, since the tensor wins.
    for parameters in ({"max_tokens": "9"}, {"temperature": "0.5"}, {"top_k": "x"}):
        with pytest.raises(InvalidInputError, match=f"parameters.{next(iter(parameters))} .*conflicts"):
            parse(sampling=json.dumps({"max_tokens": 5}).encode(), parameters=json.dumps(parameters))


def test_unknown_request_parameters_are_refused_even_beside_the_sampling_tensor() -> None:
    with pytest.raises(InvalidInputError, match=r"parameters: unknown key\(s\) max_token;"):
        parse(sampling=b'{"max_tokens": 5}', parameters=json.dumps({"max_token": 9}))


def test_logprob_flags_come_as_inputs_or_request_parameters() -> None:
    request = parse(flags={"return_logprobs": True}, parameters='{"return_cumulative_logprob": "true"}')
    assert request.return_logprobs and request.return_cumulative_logprob
    assert not parse().return_logprobs


def test_sampling_parameters_are_validated_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    original = SamplingParams.validate
    monkeypatch.setattr(
        SamplingParams, "validate", lambda self, limit: calls.append(limit) or original(self, limit)
    )
    parse(sampling=b'{"max_tokens": 5}')
    assert calls == [OPTIONS.max_tokens_limit]


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
        ({"sampling": b'{"n": 2}'}, "sampling_parameters.n must be 1, got 2: this server returns one"),
        ({"sampling": b'{"best_of": 3}'}, "sampling_parameters.best_of must be 1"),
        ({"sampling": b'{"logprobs": 21}'}, "sampling_parameters.logprobs must be in [0, 20]"),
        ({"sampling": b'{"prompt_logprobs": -1}'}, "sampling_parameters.prompt_logprobs"),
        ({"sampling": b'{"min_p": 1.5}'}, "sampling_parameters.min_p must be in [0, 1]"),
        ({"sampling": b'{"repetition_penalty": 0}'}, "sampling_parameters.repetition_penalty must be > 0"),
        ({"sampling": b'{"presence_penalty": 3}'}, "sampling_parameters.presence_penalty must be in [-2, 2]"),
        ({"sampling": b'{"frequency_penalty": "-2.5"}'}, "sampling_parameters.frequency_penalty"),
        ({"sampling": b'{"logit_bias": {"5": 200}}'}, "sampling_parameters.logit_bias must have values"),
        ({"sampling": b'{"logit_bias": {"five": 1}}'}, "sampling_parameters.logit_bias key"),
        ({"sampling": b'{"logit_bias": [1]}'}, "sampling_parameters.logit_bias must be an object"),
        ({"sampling": b'{"stop_token_ids": [-3]}'}, "sampling_parameters.stop_token_ids must have token ids"),
        ({"sampling": b'{"stop_token_ids": 3}'}, "sampling_parameters.stop_token_ids must be a list"),
        ({"sampling": b'{"allowed_token_ids": []}'}, "sampling_parameters.allowed_token_ids must not be"),
        ({"sampling": b'{"bad_words": [""]}'}, "sampling_parameters.bad_words must not contain empty"),
        ({"sampling": b'{"skip_special_tokens": "maybe"}'}, "sampling_parameters.skip_special_tokens"),
        ({"flags": {"return_logprobs": True}, "parameters": '{"logprob": 1}'}, "unknown key(s) logprob"),
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


def test_new_keys_are_coerced_like_the_old_ones() -> None:
    sampling = {
        "logprobs": "3", "prompt_logprobs": 0, "min_p": "0.1", "repetition_penalty": "1.2",
        "stop_token_ids": ["7", 9], "logit_bias": {"12": "-5", "3": 1}, "allowed_token_ids": [1, 2],
        "bad_words": "ugly", "include_stop_str_in_output": "true", "skip_special_tokens": False,
        "spaces_between_special_tokens": "0", "n": "1", "best_of": 1,
    }  # fmt: skip
    params = parse(sampling=json.dumps(sampling).encode()).sampling
    assert (params.logprobs, params.prompt_logprobs, params.min_p) == (3, 0, 0.1)
    assert params.stop_token_ids == (7, 9) and params.allowed_token_ids == (1, 2)
    assert params.logit_bias == {12: -5.0, 3: 1.0} and params.bad_words == ("ugly",)
    assert params.include_stop_str_in_output and not params.skip_special_tokens
    assert not params.spaces_between_special_tokens and params.repetition_penalty == 1.2


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


def test_the_readme_sampling_table_lists_every_key_once() -> None:
    from pathlib import Path

    from ds_triton_interface import SAMPLING_KEYS

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    table = readme[readme.index("### Sampling keys") : readme.index("### Log-probabilities")]
    listed = [
        name.strip(" `")
        for row in table.splitlines()
        if row.startswith("| `")
        for name in row.split("|")[1].split(",")
    ]
    assert sorted(listed) == sorted(SAMPLING_KEYS)
