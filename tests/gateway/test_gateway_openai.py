"""The OpenAI API through the real ``openai`` SDK, against the gateway in front of a real Triton.

Embeddings equal the Triton model's own output, greedy completions and chats
equal Hugging Face ``generate`` on the same checkpoint (whole and streamed),
usage counts match, and every refusal is the SDK's typed exception with
OpenAI's error object.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import openai
import pytest

from ds_triton.server_process.tritonserver import TritonServer
from ds_triton_client import Client
from ds_triton_gateway.settings import GatewaySettings
from tests.conftest import MODEL_REPOSITORY
from tests.gateway.conftest import Gateway, gateway_in_process, gateway_process, silent_upstream

pytestmark = pytest.mark.server

EMBED = "text_embedding"
GENERATE = "text_generation"
MAX_REQUEST_BYTES = 256 * 1024
TEXTS = ["The quick brown fox jumps over the lazy dog.", "hello", "word " * 400]


@pytest.fixture(scope="module")
def gateway(triton_server: TritonServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    work = tmp_path_factory.mktemp("gateway")
    args = ["--max-request-bytes", str(MAX_REQUEST_BYTES)]
    with gateway_process(f"grpc://{triton_server.grpc_url}", work, args=args) as running:
        yield running


@pytest.fixture(scope="module")
def sdk(gateway: Gateway) -> openai.OpenAI:
    return gateway.openai()


def test_models_lists_every_ready_model_with_its_task(sdk: openai.OpenAI) -> None:
    models = {m.id: m for m in sdk.models.list()}
    assert set(models) == {EMBED, GENERATE}
    assert models[EMBED].model_extra == {"task": "embedding"}
    assert models[GENERATE].model_extra == {"task": "generation"}
    assert sdk.models.retrieve(GENERATE).id == GENERATE
    with pytest.raises(openai.NotFoundError):
        sdk.models.retrieve("no_such_model")


def test_embeddings_equal_the_models_own_output(sdk: openai.OpenAI, triton_server: TritonServer) -> None:
    with Client(f"grpc://{triton_server.grpc_url}", health_interval=0) as client:
        direct = client.embed(TEXTS, model=EMBED)
    answer = sdk.embeddings.create(model=EMBED, input=TEXTS)  # the SDK asks for base64 by default
    by_base64 = np.array([item.embedding for item in answer.data], dtype=np.float32)
    as_floats = sdk.embeddings.create(model=EMBED, input=TEXTS, encoding_format="float")
    by_float = np.array([item.embedding for item in as_floats.data], dtype=np.float32)
    np.testing.assert_allclose(by_base64, direct, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(by_float, by_base64)  # float32 values survive JSON exactly
    assert [item.index for item in answer.data] == [0, 1, 2]
    assert answer.model == EMBED


def test_embedding_usage_counts_the_tokens_the_model_encodes(sdk: openai.OpenAI) -> None:
    from transformers import AutoTokenizer

    from ds_triton.spec import ModelSpec
    from tests.conftest import MODEL_REPOSITORY

    version = MODEL_REPOSITORY / EMBED / "1"
    tokenizer = AutoTokenizer.from_pretrained(str(ModelSpec.load(version).resolve_checkpoint(version)))
    expected = sum(min(len(tokenizer(t)["input_ids"]), 256) for t in TEXTS)
    usage = sdk.embeddings.create(model=EMBED, input=TEXTS).usage
    assert (usage.prompt_tokens, usage.total_tokens) == (expected, expected)
    assert sdk.embeddings.create(model=EMBED, input="hello").usage.prompt_tokens == len(
        tokenizer("hello")["input_ids"]
    )


def test_dimensions_truncate_and_renormalise(sdk: openai.OpenAI) -> None:
    full = np.array(sdk.embeddings.create(model=EMBED, input=TEXTS[0]).data[0].embedding, dtype=np.float32)
    short = np.array(
        sdk.embeddings.create(model=EMBED, input=TEXTS[0], dimensions=64).data[0].embedding, dtype=np.float32
    )
    assert short.shape == (64,)
    np.testing.assert_allclose(short, full[:64] / np.linalg.norm(full[:64]), rtol=0, atol=1e-6)
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.embeddings.create(model=EMBED, input="x", dimensions=1000)
    assert caught.value.body["param"] == "dimensions"  # type: ignore[index]


@pytest.mark.parametrize("prompt", ["The capital of France is", "Once upon a time"])
def test_greedy_completion_equals_hf_generate(sdk: openai.OpenAI, hf_reference: Any, prompt: str) -> None:
    expected, tokens = hf_reference(prompt, 12)
    answer = sdk.completions.create(model=GENERATE, prompt=prompt, max_tokens=12, temperature=0)
    (choice,) = answer.choices
    assert choice.text == expected
    assert choice.finish_reason == ("length" if tokens == 12 else "stop")
    assert answer.usage is not None and answer.usage.completion_tokens == tokens
    chunks = list(sdk.completions.create(model=GENERATE, prompt=prompt, max_tokens=12, temperature=0,
                                         stream=True, stream_options={"include_usage": True}))  # fmt: skip
    assert "".join(c.choices[0].text for c in chunks if c.choices) == expected
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == choice.finish_reason
    assert chunks[-1].choices == [] and chunks[-1].usage == answer.usage  # include_usage: the counts
    assert all(c.usage is None for c in chunks[:-1])


def test_greedy_chat_equals_hf_generate_on_the_plain_template(sdk: openai.OpenAI, hf_reference: Any) -> None:
    messages: Any = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there"}]
    expected, tokens = hf_reference("System: Be brief.\nUser: Hello there\nAssistant:", 10)
    answer = sdk.chat.completions.create(model=GENERATE, messages=messages, max_tokens=10, temperature=0)
    (choice,) = answer.choices
    assert (choice.message.role, choice.message.content) == ("assistant", expected)
    assert answer.usage is not None and answer.usage.completion_tokens == tokens
    stream = sdk.chat.completions.create(model=GENERATE, messages=messages, max_tokens=10, temperature=0,
                                         stream=True, stream_options={"include_usage": True})  # fmt: skip
    chunks = list(stream)
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert deltas[0].role == "assistant"
    assert "".join(d.content or "" for d in deltas) == expected
    assert chunks[-1].usage == answer.usage
    assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id for c in chunks)


def test_a_stop_string_ends_with_finish_reason_stop(sdk: openai.OpenAI) -> None:
    full = sdk.completions.create(model=GENERATE, prompt="Once upon a time", max_tokens=12, temperature=0)
    words = full.choices[0].text.split()
    stop = words[len(words) // 2]
    cut = sdk.completions.create(model=GENERATE, prompt="Once upon a time", max_tokens=12, temperature=0,
                                 stop=[stop])  # fmt: skip
    assert cut.choices[0].finish_reason == "stop"
    assert full.choices[0].text.startswith(cut.choices[0].text) and stop not in cut.choices[0].text


def test_several_prompts_get_one_choice_each_and_echo(sdk: openai.OpenAI) -> None:
    answer = sdk.completions.create(model=GENERATE, prompt=["Hello", "Once upon a time"], max_tokens=4,
                                    temperature=0, echo=True)  # fmt: skip
    assert [c.index for c in answer.choices] == [0, 1]
    assert answer.choices[0].text.startswith("Hello") and answer.choices[1].text.startswith(
        "Once upon a time"
    )
    chunks = list(sdk.completions.create(model=GENERATE, prompt=["Hello", "Bye"], max_tokens=3,
                                         temperature=0, stream=True))  # fmt: skip
    finished = sorted(c.choices[0].index for c in chunks if c.choices and c.choices[0].finish_reason)
    assert finished == [0, 1]


def test_vllm_sampling_keys_pass_through_as_extra_fields(sdk: openai.OpenAI) -> None:
    answer = sdk.completions.create(model=GENERATE, prompt="Hi", max_tokens=5, temperature=0,
                                    extra_body={"ignore_eos": True, "min_tokens": 5, "top_k": 1})  # fmt: skip
    assert answer.usage is not None and answer.usage.completion_tokens == 5
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.completions.create(model=GENERATE, prompt="Hi", extra_body={"top_k": -7})
    assert caught.value.body["param"] == "top_k"  # type: ignore[index]


@pytest.mark.parametrize(
    ("call", "error", "status", "param"),
    [
        (lambda s: s.completions.create(model="nope", prompt="x"), openai.NotFoundError, 404, "model"),
        (lambda s: s.completions.create(model=GENERATE, prompt="x", temperature=-1), openai.BadRequestError,
         400, "temperature"),
        (lambda s: s.completions.create(model=GENERATE, prompt="x", max_tokens=10**5), openai.BadRequestError,
         400, "max_tokens"),
        (lambda s: s.completions.create(model=GENERATE, prompt="x", n=2), openai.BadRequestError, 400, "n"),
        (lambda s: s.completions.create(model=GENERATE, prompt=[[1, 2, 3]]), openai.BadRequestError, 400,
         "prompt"),
        (lambda s: s.embeddings.create(model=EMBED, input=[[1, 2, 3]]), openai.BadRequestError, 400, "input"),
        (lambda s: s.embeddings.create(model=EMBED, input=[""]), openai.BadRequestError, 400, "input"),
        (lambda s: s.embeddings.create(model=GENERATE, input="x"), openai.BadRequestError, 400, "model"),
        (lambda s: s.chat.completions.create(model=GENERATE, messages=[{"role": "user", "content": "x"}],
                                             tools=[{"type": "function", "function": {"name": "f"}}]),
         openai.BadRequestError, 400, "tools"),
        (lambda s: s.embeddings.create(model=EMBED, input=["x" * 1000] * 300), openai.APIStatusError, 413,
         None),
    ],
    ids=["unknown-model", "bad-temperature", "max-tokens-over-limit", "n", "token-prompt", "token-input",
         "empty-input", "wrong-task", "tools", "too-large"],
)  # fmt: skip
def test_each_refusal_is_the_sdks_typed_error_with_an_error_object(
    sdk: openai.OpenAI, call: Any, error: type[openai.APIStatusError], status: int, param: str | None
) -> None:
    with pytest.raises(error) as caught:
        call(sdk)
    assert caught.value.status_code == status
    body = caught.value.body
    assert isinstance(body, dict) and set(body) == {"message", "type", "param", "code"}
    assert body["param"] == param and body["message"]


def test_unknown_routes_and_bad_json_get_error_objects(gateway: Gateway) -> None:
    status, text = gateway.get("/v1/nothing-here")
    assert status == 404 and json.loads(text)["error"]["code"] == "not_found"
    import urllib.error
    import urllib.request

    request = urllib.request.Request(gateway.url + "/v1/completions", data=b"{oops", method="POST",
                                     headers={"Content-Type": "application/json"})  # fmt: skip
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=30)
    assert caught.value.code == 400
    assert json.loads(caught.value.read())["error"]["code"] == "invalid_json"


def test_metrics_count_requests_latency_ttft_and_tokens(gateway: Gateway, sdk: openai.OpenAI) -> None:
    before = gateway.metric("ds_triton_gateway_requests_total", route="/v1/completions", status="200")
    ttft_before = gateway.metric("ds_triton_gateway_time_to_first_token_seconds_count")
    list(sdk.completions.create(model=GENERATE, prompt="Hi", max_tokens=3, stream=True))
    sdk.embeddings.create(model=EMBED, input="count me")
    assert (
        gateway.metric("ds_triton_gateway_requests_total", route="/v1/completions", status="200")
        == before + 1
    )
    assert gateway.metric("ds_triton_gateway_time_to_first_token_seconds_count") == ttft_before + 1
    assert gateway.metric("ds_triton_gateway_request_duration_seconds_count", route="/v1/embeddings") >= 1
    assert gateway.metric("ds_triton_gateway_tokens_total", model=EMBED, kind="prompt") > 0
    assert gateway.metric("ds_triton_gateway_tokens_total", model=GENERATE, kind="completion") > 0
    assert gateway.metric("ds_triton_gateway_requests_total", status="404") >= 1


def test_the_request_deadline_is_504_and_the_in_flight_limit_429() -> None:
    """An upstream that accepts connections and never answers: the deadline ends the request."""
    with silent_upstream() as url:
        settings = GatewaySettings(
            urls=url, model_repository=MODEL_REPOSITORY, request_timeout=1.5, max_in_flight=1
        )
        with gateway_in_process(settings) as gateway:
            outcome: list[BaseException] = []

            def waits() -> None:
                try:
                    gateway.openai().completions.create(model=GENERATE, prompt="nobody answers", max_tokens=2)
                except openai.APIStatusError as exc:
                    outcome.append(exc)

            waiter = threading.Thread(target=waits)
            waiter.start()
            try:
                deadline = time.monotonic() + 30
                while gateway.metric("ds_triton_gateway_requests_in_flight") < 1:
                    assert time.monotonic() < deadline, "the first request never arrived"
                    time.sleep(0.01)
                with pytest.raises(openai.RateLimitError) as limited:
                    gateway.openai().models.list()
            finally:
                waiter.join(timeout=60)
    assert limited.value.status_code == 429
    assert limited.value.body["code"] == "too_many_requests"  # type: ignore[index]
    assert limited.value.response.headers["retry-after"] == "1"
    (timed_out,) = outcome
    assert isinstance(timed_out, openai.InternalServerError) and timed_out.status_code == 504
    assert timed_out.body["code"] == "upstream_timeout"  # type: ignore[index]


def test_completion_logprobs_are_the_models_own(sdk: openai.OpenAI, triton_server: TritonServer) -> None:
    prompt = "Once upon a time"
    with Client(f"grpc://{triton_server.grpc_url}", health_interval=0) as client:
        direct = client.generate(prompt, model=GENERATE, max_tokens=6, temperature=0, logprobs=2)
    assert direct.logprobs is not None
    answer = sdk.completions.create(model=GENERATE, prompt=prompt, max_tokens=6, temperature=0, logprobs=2)
    (choice,) = answer.choices
    logprobs = choice.logprobs
    assert logprobs is not None and logprobs.tokens is not None and logprobs.top_logprobs is not None
    assert "".join(logprobs.tokens) == choice.text == direct.text
    assert logprobs.token_logprobs == [e.token.logprob for e in direct.logprobs]
    for token, top in zip(logprobs.tokens, logprobs.top_logprobs, strict=True):
        assert len(top) <= 2 and next(iter(top)) == token  # greedy: the chosen token ranks first
    assert logprobs.text_offset == [
        sum(len(t) for t in logprobs.tokens[:i]) for i in range(len(logprobs.tokens))
    ]
    chunks = list(sdk.completions.create(model=GENERATE, prompt=prompt, max_tokens=6, temperature=0,
                                         logprobs=2, stream=True))  # fmt: skip
    streamed = [c.choices[0].logprobs for c in chunks if c.choices and c.choices[0].logprobs]
    assert [t for lp in streamed for t in lp.tokens or []] == logprobs.tokens
    assert [v for lp in streamed for v in lp.token_logprobs or []] == logprobs.token_logprobs
    assert [o for lp in streamed for o in lp.text_offset or []] == logprobs.text_offset
    echoed = sdk.completions.create(model=GENERATE, prompt=prompt, max_tokens=6, temperature=0, logprobs=1,
                                    echo=True).choices[0]  # fmt: skip
    assert echoed.text == prompt + choice.text and echoed.logprobs is not None
    assert echoed.logprobs.token_logprobs is not None and echoed.logprobs.tokens is not None
    assert echoed.logprobs.token_logprobs[0] is None  # nothing precedes the first prompt token
    assert echoed.logprobs.tokens[-6:] == logprobs.tokens
    assert len(echoed.logprobs.tokens) == (answer.usage.prompt_tokens if answer.usage else 0) + 6


def test_chat_logprobs_list_the_top_tokens(sdk: openai.OpenAI) -> None:
    messages: Any = [{"role": "user", "content": "Hello there"}]
    answer = sdk.chat.completions.create(model=GENERATE, messages=messages, max_tokens=5, temperature=0,
                                         logprobs=True, top_logprobs=3)  # fmt: skip
    (choice,) = answer.choices
    assert choice.logprobs is not None and choice.logprobs.content is not None
    content = choice.logprobs.content
    assert "".join(t.token for t in content) == choice.message.content
    assert answer.usage is not None and len(content) == answer.usage.completion_tokens
    for token in content:
        assert token.logprob <= 0 and token.bytes == list(token.token.encode("utf-8"))
        assert len(token.top_logprobs) == 3 and token.top_logprobs[0].token == token.token
    chunks = list(sdk.chat.completions.create(model=GENERATE, messages=messages, max_tokens=5, temperature=0,
                                              logprobs=True, top_logprobs=3, stream=True))  # fmt: skip
    streamed = [
        t for c in chunks if c.choices and c.choices[0].logprobs for t in c.choices[0].logprobs.content or []
    ]
    assert [(t.token, t.logprob) for t in streamed] == [(t.token, t.logprob) for t in content]
