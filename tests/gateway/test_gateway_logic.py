"""The gateway's pure logic, without a server: keys, errors, inputs, dimensions, templates."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest

from ds_triton.spec import ModelSpec
from ds_triton_client import (
    Candidate,
    ClientError,
    DeadlineExceededError,
    InvalidInputError,
    ModelNotReadyError,
    NoHealthyEndpointError,
    OverloadedError,
    PermissionDeniedError,
    ServerConnectionError,
    ServerError,
    StreamInterruptedError,
    TokenLogprob,
)
from ds_triton_gateway.auth import ApiKeys, load_api_keys
from ds_triton_gateway.embeddings import embedding_items, shorten
from ds_triton_gateway.errors import GatewayError, from_client_error
from ds_triton_gateway.inputs import chat_messages, completion_prompts, embedding_texts, sampling_of
from ds_triton_gateway.logprobs import chat_logprobs, completion_logprobs, echoed_completion_logprobs
from ds_triton_gateway.schemas import ChatRequest, CompletionRequest, EmbeddingRequest, parse_body
from ds_triton_gateway.text import Message, ModelText
from tests.conftest import MODEL_REPOSITORY

KEY = "k" * 20


def body(**fields: object) -> bytes:
    return json.dumps(fields).encode()


# --- API keys -----------------------------------------------------------------------------


def test_api_keys_accept_only_a_listed_bearer_key(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(f"# team A\n{KEY}\n\n")
    keys = load_api_keys(path, "x" * 16 + ", " + "y" * 16)
    assert keys.required
    assert keys.accepts(f"Bearer {KEY}") and keys.accepts("bearer " + "y" * 16)
    for refused in (None, "", KEY, f"Bearer {KEY}x", f"Basic {KEY}", "Bearer " + "z" * 20):
        assert not keys.accepts(refused), refused


def test_no_keys_means_no_authentication() -> None:
    assert not load_api_keys(None, None).required


@pytest.mark.parametrize("bad", ["short", "with space inside the key", "tab\tinside-the-key-x"])
def test_weak_or_malformed_keys_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="at least 16 printable characters"):
        ApiKeys.of([bad])


def test_an_empty_key_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "keys").write_text("# nothing\n")
    with pytest.raises(ValueError, match="holds no key"):
        load_api_keys(tmp_path / "keys", None)


# --- client failures -> status ------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (InvalidInputError("sampling_parameters.top_p must be in (0, 1], got 7"), 400, "invalid_value"),
        (InvalidInputError("max_tokens plus the prompt exceeds the model's context of 8 tokens"),
         400, "context_length_exceeded"),
        (ModelNotReadyError("Request for unknown model"), 503, "model_not_ready"),
        (OverloadedError("too many concurrent requests"), 503, "overloaded"),
        (NoHealthyEndpointError("every endpoint is ejected"), 503, "upstream_unavailable"),
        (ServerConnectionError("connection refused"), 503, "upstream_unavailable"),
        (DeadlineExceededError("deadline passed"), 504, "upstream_timeout"),
        (ServerError("Stub process is not healthy"), 502, "upstream_error"),
        (StreamInterruptedError("stream broke"), 502, "upstream_error"),
        (PermissionDeniedError("restricted"), 502, "upstream_error"),
        (ClientError("anything else"), 502, "upstream_error"),
    ],
)  # fmt: skip
def test_every_client_failure_has_its_status_and_an_error_object(
    error: ClientError, status: int, code: str
) -> None:
    mapped = from_client_error(error)
    assert (mapped.status, mapped.code) == (status, code)
    assert set(mapped.body()["error"]) == {"message", "type", "param", "code"}  # type: ignore[arg-type]
    assert error.message in mapped.message
    assert ("Retry-After" in mapped.headers()) == (status in (429, 503))


def test_an_input_error_names_the_field() -> None:
    assert from_client_error(InvalidInputError("sampling_parameters.top_p must be ...")).param == "top_p"
    assert from_client_error(InvalidInputError("sampling parameter 'seed' must be ...")).param == "seed"
    blamed = from_client_error(InvalidInputError("input 'text_input' is 900 tokens long"), "messages")
    assert blamed.param == "messages"


# --- request bodies -------------------------------------------------------------------------


def test_bad_bodies_get_400s_naming_the_field() -> None:
    cases = [
        (b"{not json", None, "invalid_json"),
        (b"[1, 2]", None, "invalid_json"),
        (body(input="x"), "model", "missing_required_parameter"),
        (body(model="m", input="x", encoding_format="int8"), "encoding_format", "invalid_value"),
        (body(model="m", input="x", colour="red"), "colour", "unknown_parameter"),
        (body(model="m", input="x", dimensions="many"), "dimensions", "invalid_value"),
    ]
    for raw, param, code in cases:
        with pytest.raises(GatewayError) as caught:
            parse_body(raw, EmbeddingRequest)
        assert (caught.value.status, caught.value.param, caught.value.code) == (400, param, code), raw


def test_embedding_input_rules() -> None:
    assert embedding_texts("one", 8) == ["one"]
    assert embedding_texts(["a", "b"], 8) == ["a", "b"]
    for value, message in [([[1, 2, 3]], "token ids"), ([5, 6], "token ids"), ([], "must not be empty"),
                           (["ok", " "], r"'input\[1\]' is empty"), (["x"] * 9, "at most 8")]:  # fmt: skip
        with pytest.raises(GatewayError, match=message) as caught:
            embedding_texts(value, 8)
        assert caught.value.param == "input"


def test_completion_prompts_and_sampling() -> None:
    request = parse_body(
        body(model="m", prompt=["a", "b"], max_tokens=4, temperature=0, stop="x", seed=3, top_k=5, n=1),
        CompletionRequest,
    )
    assert completion_prompts(request.prompt) == ["a", "b"]
    sampling = {k: v for k, v in sampling_of(request).items() if v is not None}
    assert sampling == {"max_tokens": 4, "temperature": 0.0, "stop": "x", "seed": 3, "top_k": 5}
    with pytest.raises(GatewayError, match="token ids"):
        completion_prompts([[1, 2]])


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"n": 2}, "n"),
        ({"best_of": 3}, "best_of"),
        ({"suffix": "end"}, "suffix"),
        ({"colour": "red"}, "colour"),
        ({"prompt_logprobs": 1}, "prompt_logprobs"),
    ],
)
def test_what_the_models_cannot_do_is_refused_by_name(fields: dict[str, object], param: str) -> None:
    request = parse_body(body(model="m", prompt="p", **fields), CompletionRequest)
    with pytest.raises(GatewayError) as caught:
        sampling_of(request)
    assert (caught.value.status, caught.value.param) == (400, param)


def test_chat_fields() -> None:
    request = parse_body(
        body(model="m", messages=[{"role": "developer", "content": "be brief"},
                                  {"role": "user", "content": [{"type": "text", "text": "hi "},
                                                               {"type": "text", "text": "there"}]}],
             max_completion_tokens=7, tool_choice="none", response_format={"type": "text"}, user="u1"),
        ChatRequest,
    )  # fmt: skip
    assert chat_messages(request.messages) == [Message("developer", "be brief"), Message("user", "hi there")]
    assert sampling_of(request)["max_tokens"] == 7
    refused = [
        ({"messages": [{"role": "tool", "content": "42", "tool_call_id": "1"}]}, "messages"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
         "messages"),
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"messages": []}, "messages"),
    ]  # fmt: skip
    for fields, param in refused:
        request = parse_body(body(**{"model": "m", "messages": [{"role": "user", "content": "x"}], **fields}),
                             ChatRequest)  # fmt: skip
        with pytest.raises(GatewayError) as caught:
            sampling_of(request)
            chat_messages(request.messages)
        assert caught.value.param == param, fields


# --- embeddings -----------------------------------------------------------------------------


def test_dimensions_truncate_and_renormalise() -> None:
    rng = np.random.default_rng(0)
    full = rng.normal(size=(3, 16)).astype(np.float32)
    full /= np.linalg.norm(full, axis=1, keepdims=True)
    short = shorten(full, 4)
    assert short.shape == (3, 4) and short.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(short, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(short, full[:, :4] / np.linalg.norm(full[:, :4], axis=1, keepdims=True),
                               rtol=1e-6)  # fmt: skip
    assert shorten(full, None) is full and shorten(full, 16) is full
    for bad in (0, 17):
        with pytest.raises(GatewayError, match="between 1 and the model's size") as caught:
            shorten(full, bad)
        assert caught.value.param == "dimensions"


def test_base64_holds_the_float32_bytes() -> None:
    vectors = np.array([[0.1, -2.5, 3.0]], dtype=np.float32)
    (item,) = embedding_items(vectors, "base64")
    decoded = np.frombuffer(base64.b64decode(item["embedding"]), dtype="<f4")
    np.testing.assert_array_equal(decoded, vectors[0])
    assert embedding_items(vectors, "float")[0]["embedding"].tolist() == vectors[0].tolist()


# --- the checkpoint's tokenizer ----------------------------------------------------------------


def generation_text(chat_template: str | None = None) -> ModelText:
    version = MODEL_REPOSITORY / "text_generation" / "1"
    text = ModelText.load(ModelSpec.load(version), version)
    text.tokenizer.chat_template = chat_template
    return text


def test_without_a_chat_template_the_plain_template_is_used() -> None:
    text = generation_text()
    messages = [Message("system", "Be brief."), Message("user", "Hi"), Message("assistant", "Hello"),
                Message("user", "Bye")]  # fmt: skip
    assert (
        text.chat_prompt(messages) == "System: Be brief.\nUser: Hi\nAssistant: Hello\nUser: Bye\nAssistant:"
    )


def test_the_checkpoint_chat_template_renders_the_prompt() -> None:
    template = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}"
                "{% if add_generation_prompt %}<assistant>{% endif %}")  # fmt: skip
    text = generation_text(template)
    messages = [Message("developer", "Be brief."), Message("user", "Hi")]
    assert text.chat_prompt(messages) == "<system>Be brief.\n<user>Hi\n<assistant>"


def test_a_template_that_refuses_the_conversation_is_a_clear_error() -> None:
    text = generation_text("{{ raise_exception('roles must alternate user/assistant') }}")
    with pytest.raises(ValueError, match="roles must alternate"):
        text.chat_prompt([Message("user", "Hi")])


def test_default_max_tokens_is_what_the_limits_leave() -> None:
    text = generation_text()
    assert text.default_max_tokens("Hi") == text.spec.generation_options.max_tokens_limit
    assert text.context is not None
    long_prompt = "word " * (text.context - 10)
    assert 1 <= text.default_max_tokens(long_prompt) <= 10


def test_embedding_token_counts_are_cut_like_the_model() -> None:
    version = MODEL_REPOSITORY / "text_embedding" / "1"
    text = ModelText.load(ModelSpec.load(version), version)
    assert text.max_length == 256
    assert text.count_embedding_tokens(["hello world"]) == len(text.tokenizer("hello world")["input_ids"])
    assert text.count_embedding_tokens(["word " * 1000, "hi"]) == 256 + len(text.tokenizer("hi")["input_ids"])


# --- log-probabilities --------------------------------------------------------------------------


def entry(text: str, logprob: float, *others: tuple[str, float]) -> TokenLogprob:
    chosen = Candidate(len(text), text, logprob, 1 + sum(1 for _, lp in others if lp > logprob))
    listed = sorted([chosen, *(Candidate(100 + i, t, lp, 0) for i, (t, lp) in enumerate(others))],
                    key=lambda c: -c.logprob)  # fmt: skip
    ranked = tuple(Candidate(c.token_id, c.text, c.logprob, rank) for rank, c in enumerate(listed, 1))
    return TokenLogprob(next(c for c in ranked if c.token_id == chosen.token_id), ranked)


def test_completion_logprobs_list_the_top_tokens_and_offsets() -> None:
    entries = [entry(" Hi", -0.5, (" Ho", -1.5)), entry(" there", -2.0, (" you", -0.25), (" all", -3.0))]
    shaped = completion_logprobs(entries, 1, offset=4)
    assert shaped == {
        "tokens": [" Hi", " there"],
        "token_logprobs": [-0.5, -2.0],
        "top_logprobs": [{" Hi": -0.5}, {" you": -0.25}],
        "text_offset": [4, 7],
    }


def test_echo_puts_the_prompt_tokens_first() -> None:
    prompt = [None, entry(" world", -3.0)]
    shaped = echoed_completion_logprobs("Hello world", prompt, [entry("!", -0.1)], 0)
    assert shaped["tokens"] == ["Hello", " world", "!"]
    assert shaped["token_logprobs"] == [None, -3.0, -0.1]
    assert shaped["top_logprobs"] == [None, {}, {}]
    assert shaped["text_offset"] == [0, 5, 11]


def test_chat_logprobs_carry_bytes_and_top_tokens() -> None:
    shaped = chat_logprobs([entry("é", -0.5, ("e", -1.0), ("a", -2.0))], 2)
    (token,) = shaped["content"]
    assert token["token"] == "é" and token["bytes"] == [0xC3, 0xA9] and token["logprob"] == -0.5
    assert [t["token"] for t in token["top_logprobs"]] == ["é", "e"]
    assert shaped["refusal"] is None


def test_logprobs_fields_become_sampling_keys() -> None:
    completion = parse_body(body(model="m", prompt="p", logprobs=3, echo=True), CompletionRequest)
    assert sampling_of(completion)["logprobs"] == 3 and sampling_of(completion)["prompt_logprobs"] == 3
    chat = parse_body(body(model="m", messages=[{"role": "user", "content": "x"}], logprobs=True,
                           top_logprobs=4), ChatRequest)  # fmt: skip
    assert sampling_of(chat)["logprobs"] == 4
    lonely = parse_body(body(model="m", messages=[{"role": "user", "content": "x"}], top_logprobs=4),
                        ChatRequest)  # fmt: skip
    with pytest.raises(GatewayError) as caught:
        sampling_of(lonely)
    assert caught.value.param == "top_logprobs"
