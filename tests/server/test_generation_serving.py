"""text_generation on a real tritonserver, through the clients of Triton's vLLM backend.

gRPC ``stream_infer`` (sync and the asyncio client of the backend's sample),
HTTP ``generate`` and ``generate_stream`` (SSE), greedy equality with HF
``generate`` alone and in a running batch, the shared-forward-pass proof from
the custom metrics, and a perf_analyzer run with a vLLM-style input file.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as grpcclient_aio

from ds_triton.server_process.tritonserver import TritonServer
from tests.server.generation_client import (
    CHECKPOINT,
    MODEL,
    HFReference,
    grpc_generate,
    hf_greedy_reference,
    http_post,
    prompt_tokens,
    settled_generation_metrics,
    sse_events,
    vllm_inputs,
    wait_for_metrics,
)
from tests.server.perf_tool import perf_analyzer_throughput

pytestmark = pytest.mark.server
PROMPTS = [
    "Hello",
    "The quick brown fox jumps over the lazy dog and keeps running",
    "a b",
    "Ünïcödé text, emoji and 中文 are fine too",
]


@pytest.fixture(scope="session")
def hf_reference() -> HFReference:
    """HF ``generate`` (greedy) on the shipped checkpoint, in this process."""
    return hf_greedy_reference(CHECKPOINT)


# -- tests ---------------------------------------------------------------------


def test_config_has_the_vllm_backend_interface(triton_server: TritonServer) -> None:
    client = grpcclient.InferenceServerClient(triton_server.grpc_url)
    config = client.get_model_config(MODEL, as_json=True)["config"]
    assert config["model_transaction_policy"]["decoupled"] is True
    assert int(config.get("max_batch_size", 0)) == 0
    inputs = {i["name"]: (i["data_type"], i["dims"], i.get("optional", False)) for i in config["input"]}
    assert inputs["text_input"] == ("TYPE_STRING", ["1"], False)
    for name in ("stream", "exclude_input_in_output", "return_num_input_tokens",
                 "return_num_output_tokens"):
        assert inputs[name] == ("TYPE_BOOL", ["1"], True)
    assert inputs["sampling_parameters"] == ("TYPE_STRING", ["1"], True)
    outputs = {o["name"]: (o["data_type"], o["dims"]) for o in config["output"]}
    assert outputs["text_output"] == ("TYPE_STRING", ["-1"])
    assert outputs["num_input_tokens"] == ("TYPE_UINT32", ["1"])
    assert outputs["num_output_tokens"] == ("TYPE_UINT32", ["-1"])


def test_grpc_streaming_matches_hf_generate_alone(
    triton_server: TritonServer, hf_reference: HFReference
) -> None:
    sampling = {"temperature": 0, "max_tokens": 20}
    (stream,) = grpc_generate(triton_server.grpc_url, [vllm_inputs(PROMPTS[1], True, sampling, counts=True)])
    expected, count = hf_reference(PROMPTS[1], 20)
    assert stream.error is None
    assert stream.text == expected
    assert stream.tokens == count == 20
    # A response per token, unless the client lagged and some were merged.
    assert 1 <= len(stream.texts) <= 20 and all(n >= 1 for n in stream.num_output_tokens)
    assert set(stream.num_input_tokens) == {prompt_tokens(CHECKPOINT, PROMPTS[1])}
    assert stream.finish_reasons[-1] == "length"
    assert set(stream.finish_reasons[:-1]) <= {"None"}


def test_greedy_in_a_batch_of_different_lengths_matches_hf_generate(
    triton_server: TritonServer, hf_reference: HFReference
) -> None:
    before = settled_generation_metrics(triton_server)
    lengths = [24, 9, 30, 17]
    requests = [
        vllm_inputs(p, True, {"temperature": 0, "max_tokens": n})
        for p, n in zip(PROMPTS, lengths, strict=True)
    ]
    streams = grpc_generate(triton_server.grpc_url, requests)
    for prompt, n, stream in zip(PROMPTS, lengths, streams, strict=True):
        assert stream.error is None
        assert stream.text == hf_reference(prompt, n)[0], prompt
    # Every token after a stream's first comes from a decode row. Metrics reach the server as
    # separate messages a moment after the responses, so wait for what is asserted: the rows.
    rows_key = "ds_triton_generation_batch_occupancy_sum"
    after = wait_for_metrics(
        triton_server, lambda m: m.get(rows_key, 0) - before.get(rows_key, 0) >= sum(lengths) - len(lengths)
    )
    passes = after["ds_triton_generation_batch_occupancy_count"] - before.get(
        "ds_triton_generation_batch_occupancy_count", 0
    )
    rows = after[rows_key] - before.get(rows_key, 0)
    assert rows > passes, "the prompts never decoded in the same batch"


def test_eight_concurrent_streams_share_forward_passes(triton_server: TritonServer) -> None:
    before = settled_generation_metrics(triton_server)
    sampling = {"temperature": 0.8, "top_p": 0.9, "max_tokens": 32, "ignore_eos": True}
    requests = [vllm_inputs(f"stream number {i} says", True, sampling, counts=True) for i in range(8)]
    streams = grpc_generate(triton_server.grpc_url, requests)
    assert all(s.error is None and s.tokens == 32 for s in streams)
    tokens_key = "ds_triton_generation_tokens_total"
    after = wait_for_metrics(
        triton_server, lambda m: m.get(tokens_key, 0) - before.get(tokens_key, 0) >= 8 * 32
    )

    def delta(key: str) -> float:
        return after.get(key, 0.0) - before.get(key, 0.0)

    tokens = delta("ds_triton_generation_tokens_total")
    forwards = delta("ds_triton_generation_forward_passes_total[phase=decode]") + delta(
        "ds_triton_generation_forward_passes_total[phase=prefill]"
    )
    assert tokens == 8 * 32
    # Alone, every token would cost a forward pass; shared, one pass serves many streams.
    assert forwards <= tokens / 3, (forwards, tokens)
    assert delta("ds_triton_generation_time_to_first_token_seconds_count") == 8


def test_http_generate_stream_sends_server_sent_events(
    triton_server: TritonServer, hf_reference: HFReference
) -> None:
    body = {"text_input": "Hello", "parameters": {"stream": True, "temperature": 0, "max_tokens": 16}}
    status, text = http_post(triton_server, "generate_stream", body)
    assert status == 200, text
    events = sse_events(text)
    assert 1 <= len(events) <= 16  # one per token unless merged for a lagging client
    assert all(e["model_name"] == MODEL for e in events)
    assert "".join(e["text_output"] for e in events) == hf_reference("Hello", 16)[0]


def test_http_generate_returns_prompt_and_text_in_one_response(
    triton_server: TritonServer, hf_reference: HFReference
) -> None:
    body = {
        "text_input": "Hello",
        "return_num_output_tokens": True,
        "parameters": {"temperature": 0, "max_tokens": 8},
    }
    status, text = http_post(triton_server, "generate", body)
    assert status == 200, text
    payload = json.loads(text)
    assert payload["text_output"] == "Hello" + hf_reference("Hello", 8)[0]
    assert payload["num_output_tokens"] == 8
    excluded = {**body, "exclude_input_in_output": True}
    assert json.loads(http_post(triton_server, "generate", excluded)[1])["text_output"] == (
        hf_reference("Hello", 8)[0]
    )


def test_max_tokens_and_stop_strings_end_the_stream_with_a_final_response(
    triton_server: TritonServer, hf_reference: HFReference
) -> None:
    reference = hf_reference(PROMPTS[0], 12)[0]
    stop = reference.split()[3]
    requests = [
        vllm_inputs(PROMPTS[0], True, {"temperature": 0, "max_tokens": 5}, counts=True),
        vllm_inputs(PROMPTS[0], True, {"temperature": 0, "max_tokens": 12, "stop": [stop]}, counts=True),
    ]
    limited, stopped = grpc_generate(triton_server.grpc_url, requests)
    assert limited.final and limited.finish_reasons[-1] == "length" and limited.tokens == 5
    assert stopped.final and stopped.finish_reasons[-1] == "stop"
    assert stopped.text == reference[: reference.index(stop)]


def test_more_one_token_requests_than_rows_all_finish_and_free_their_rows(
    triton_server: TritonServer,
) -> None:
    # A request ending on its first token once kept its row: after the 16th, every request
    # queued until its client's deadline (the joint soak of make bench found it).
    rows = 16  # the shipped max_concurrent_sequences (test_custom_metrics checks it)
    requests = [vllm_inputs(f"one token {i}", True, {"max_tokens": 1}, counts=True) for i in range(3 * rows)]
    streams = grpc_generate(triton_server.grpc_url, requests, timeout=60)
    assert all(s.final and s.error is None and s.tokens == 1 for s in streams)
    then = vllm_inputs("and then", True, {"max_tokens": 5}, counts=True)
    (after,) = grpc_generate(triton_server.grpc_url, [then])
    assert after.final and after.tokens == 5
    running = "ds_triton_generation_sequences[state=running]"
    assert wait_for_metrics(triton_server, lambda m: m.get(running) == 0)[running] == 0


def test_seeded_sampling_is_reproducible(triton_server: TritonServer) -> None:
    sampling = {"temperature": 1.0, "top_k": 40, "top_p": 0.95, "seed": 1234, "max_tokens": 12}
    first, second = (
        grpc_generate(triton_server.grpc_url, [vllm_inputs("Once upon a time", True, sampling)])[0]
        for _ in range(2)
    )
    assert first.text == second.text and first.text


async def test_the_vllm_sample_client_works_unchanged(triton_server: TritonServer) -> None:
    """What samples/client.py of the vLLM backend does: grpc.aio stream_infer, string
    sampling values sent both as a tensor and as request parameters, non-streaming."""
    sampling_parameters = {"temperature": "0.1", "top_p": "0.95", "max_tokens": "10"}
    prompts = ["Hello, my name is", "The most dangerous animal is"]

    def create_request(prompt: str, request_id: int) -> dict[str, Any]:
        inputs = [grpcclient_aio.InferInput("text_input", [1], "BYTES")]
        inputs[-1].set_data_from_numpy(np.array([prompt.encode("utf-8")], dtype=np.object_))
        inputs.append(grpcclient_aio.InferInput("stream", [1], "BOOL"))
        inputs[-1].set_data_from_numpy(np.array([False], dtype=bool))
        inputs.append(grpcclient_aio.InferInput("sampling_parameters", [1], "BYTES"))
        inputs[-1].set_data_from_numpy(
            np.array([json.dumps(sampling_parameters).encode("utf-8")], dtype=np.object_)
        )
        return {
            "model_name": MODEL,
            "inputs": inputs,
            "outputs": [grpcclient_aio.InferRequestedOutput("text_output")],
            "request_id": str(request_id),
            "parameters": sampling_parameters,
        }

    async def iterator() -> Any:
        for i, prompt in enumerate(prompts):
            yield create_request(prompt, i)

    client = grpcclient_aio.InferenceServerClient(url=triton_server.grpc_url)
    results: dict[str, list[str]] = {}
    try:
        async with asyncio.timeout(120):
            async for result, error in client.stream_infer(inputs_iterator=iterator()):
                assert error is None, error
                output = result.as_numpy("text_output")
                results.setdefault(result.get_response().id, []).extend(
                    t.decode("utf-8") for t in output
                )
                if len(results) == len(prompts) and all(results.values()):
                    break
    finally:
        await client.close()
    for i, prompt in enumerate(prompts):
        (text,) = results[str(i)]
        assert text.startswith(prompt.lower()[:5]) or text.startswith(prompt)
        assert len(text) > len(prompt)


def test_perf_analyzer_streams_with_a_vllm_style_input_file(
    triton_server: TritonServer, tmp_path: Path
) -> None:
    """The input file genai-perf writes for the vLLM backend, run through perf_analyzer."""
    sampling = json.dumps({"max_tokens": 16, "ignore_eos": True})
    data = {
        "data": [
            {"text_input": [p], "stream": [True], "exclude_input_in_output": [True],
             "sampling_parameters": [sampling]}
            for p in PROMPTS
        ]
    }  # fmt: skip
    throughput = perf_analyzer_throughput(
        MODEL, triton_server.grpc_url, data, tmp_path,
        "-i", "grpc", "--streaming", "--shape", "text_input:1", "--concurrency-range", "4",
    )  # fmt: skip
    assert throughput > 0


def test_custom_metrics_are_on_the_metrics_endpoint(triton_server: TritonServer) -> None:
    grpc_generate(triton_server.grpc_url, [vllm_inputs("metrics please", True, {"max_tokens": 4})])
    samples = wait_for_metrics(
        triton_server, lambda m: m.get("ds_triton_generation_tokens_total", 0) >= 4
    )
    for key in (
        "ds_triton_generation_tokens_total",
        "ds_triton_generation_forward_passes_total[phase=prefill]",
        "ds_triton_generation_forward_passes_total[phase=decode]",
        "ds_triton_generation_time_to_first_token_seconds_count",
        "ds_triton_generation_time_to_first_token_seconds_sum",
        "ds_triton_generation_batch_occupancy_count",
        "ds_triton_generation_sequences[state=running]",
        "ds_triton_generation_sequences[state=waiting]",
        "ds_triton_generation_sequences[state=capacity]",
        "ds_triton_generation_sequences_finished_total[reason=length]",
    ):
        assert key in samples, key
    assert samples["ds_triton_generation_tokens_total"] >= 4
    assert samples["ds_triton_generation_sequences[state=capacity]"] == 16
    assert samples["ds_triton_generation_time_to_first_token_seconds_sum"] > 0
