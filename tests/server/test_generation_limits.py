"""text_generation under bad input, caps, cancellation and disconnects, on a real tritonserver.

Every bad request gets its own error naming the field while other streams keep
going; a tight-capacity copy of the model proves that cancelling or
disconnecting frees a slot and that over-capacity requests get UNAVAILABLE.
"""

from __future__ import annotations

import http.client
import json
import queue
import threading
import time
from typing import Any

import pytest
import tritonclient.grpc as grpcclient

from ds_triton.server_process.tritonserver import TritonServer
from tests.server.generation_client import (
    MODEL,
    grpc_generate,
    http_post,
    settled_generation_metrics,
    vllm_inputs,
    wait_for_metrics,
)

pytestmark = pytest.mark.server


BAD_REQUESTS: list[tuple[str, dict[str, Any], str]] = [
    ("invalid JSON", {"sampling": b"{max_tokens: 3"}, "sampling_parameters is not valid JSON"),
    ("unknown key", {"sampling": {"max_tokenz": 3}}, "unknown key(s) max_tokenz"),
    ("negative max_tokens", {"sampling": {"max_tokens": -4}}, "sampling_parameters.max_tokens"),
    ("temperature < 0", {"sampling": {"temperature": -0.1}}, "sampling_parameters.temperature"),
    ("top_p > 1", {"sampling": {"top_p": 1.2}}, "sampling_parameters.top_p"),
    ("empty prompt", {"prompt": ""}, "text_input"),
    ("non-UTF-8 prompt", {"prompt": b"caf\xe9 \xff"}, "text_input' is not valid UTF-8"),
    ("non-UTF-8 parameters", {"sampling": b"\xff\xfe{}"}, "sampling_parameters is not valid UTF-8"),
    ("stream with the prompt", {"exclude_input": False}, "exclude_input_in_output"),
]


@pytest.mark.parametrize(("case", "request_args", "message"), BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS])
def test_bad_input_gets_an_error_naming_the_field(
    triton_server: TritonServer, case: str, request_args: dict[str, Any], message: str
) -> None:
    args = {"prompt": "Hello", "stream": True, **request_args}
    (stream,) = grpc_generate(triton_server.grpc_url, [vllm_inputs(**args)])
    assert stream.error is not None, case
    assert message in stream.error


def test_bad_input_over_http_is_a_400_naming_the_field(triton_server: TritonServer) -> None:
    status, text = http_post(
        triton_server, "generate", {"text_input": "Hi", "parameters": {"top_p": 7}}
    )
    assert status == 400 and "sampling_parameters.top_p" in text
    status, text = http_post(triton_server, "generate", {"text_input": "Hi", "parameters": {"bogus": 1}})
    assert status == 400 and "unknown key(s) bogus" in text


def test_bad_requests_do_not_disturb_a_running_stream(triton_server: TritonServer) -> None:
    results: list[Any] = []
    good = threading.Thread(
        target=lambda: results.extend(
            grpc_generate(
                triton_server.grpc_url,
                [vllm_inputs("a long story", True, {"max_tokens": 200, "ignore_eos": True},
                             counts=True)],
            )
        )
    )
    good.start()
    for _, request_args, message in BAD_REQUESTS:
        (stream,) = grpc_generate(triton_server.grpc_url, [vllm_inputs(**{"prompt": "x", **request_args})])
        assert stream.error and message in stream.error
    good.join(timeout=120)
    (stream,) = results
    assert stream.error is None and stream.tokens == 200
    client = grpcclient.InferenceServerClient(triton_server.grpc_url)
    assert client.is_server_live() and client.is_model_ready(MODEL)


# -- a copy of the model with tight limits (tight_server, in conftest.py) -------


def long_request() -> list[grpcclient.InferInput]:
    return vllm_inputs("tell me everything", True, {"max_tokens": 1000, "ignore_eos": True})


def wait_for_success(server: TritonServer, attempts: int = 50) -> None:
    """A fresh request succeeds once the freed slot is seen (bounded retries)."""
    for _ in range(attempts):
        request = vllm_inputs("after", True, {"max_tokens": 3}, counts=True)
        (stream,) = grpc_generate(server.grpc_url, [request])
        if stream.error is None:
            assert stream.tokens == 3
            return
        assert "too many concurrent requests" in stream.error
        time.sleep(0.1)
    raise AssertionError("the slot was never freed")


def test_prompt_over_the_limit_is_rejected(tight_server: TritonServer) -> None:
    (stream,) = grpc_generate(tight_server.grpc_url, [vllm_inputs("word " * 40, True)])
    assert stream.error and "at most 16 prompt tokens" in stream.error


def test_over_capacity_is_unavailable_and_cancelling_frees_the_slot(tight_server: TritonServer) -> None:
    before = settled_generation_metrics(tight_server)
    events: queue.Queue[Any] = queue.Queue()
    client = grpcclient.InferenceServerClient(tight_server.grpc_url)
    client.start_stream(callback=lambda result, error: events.put((result, error)))
    client.async_stream_infer(MODEL, long_request(), request_id="long")
    _, first_error = events.get(timeout=60)
    assert first_error is None
    (rejected,) = grpc_generate(tight_server.grpc_url, [vllm_inputs("second", True)])
    assert rejected.error and "too many concurrent requests" in rejected.error
    # Triton's generate endpoint answers every model error with 400; the message tells why.
    status, text = http_post(tight_server, "generate", {"text_input": "third"})
    assert status >= 400 and "too many concurrent requests" in text, (status, text)
    client.stop_stream(cancel_requests=True)
    client.close()
    wait_for_success(tight_server)
    key = "ds_triton_generation_sequences_finished_total[reason=cancelled]"
    after = wait_for_metrics(tight_server, lambda m: m.get(key, 0) - before.get(key, 0) >= 1)
    assert after[key] - before.get(key, 0) == 1


def test_http_disconnect_frees_the_slot(tight_server: TritonServer) -> None:
    before = settled_generation_metrics(tight_server)
    host, port = tight_server.http_url.split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    body = {"text_input": "tell me everything", "parameters": {"stream": True, "max_tokens": 1000,
                                                              "ignore_eos": True}}
    connection.request("POST", f"/v2/models/{MODEL}/generate_stream", json.dumps(body))
    response = connection.getresponse()
    assert response.status == 200
    assert response.readline().startswith(b"data: ")
    connection.close()  # the client goes away mid-stream
    wait_for_success(tight_server)
    key = "ds_triton_generation_sequences_finished_total[reason=cancelled]"
    after = wait_for_metrics(tight_server, lambda m: m.get(key, 0) - before.get(key, 0) >= 1)
    finished = {
        reason: after.get(f"ds_triton_generation_sequences_finished_total[reason={reason}]", 0)
        - before.get(f"ds_triton_generation_sequences_finished_total[reason={reason}]", 0)
        for reason in ("cancelled", "length")
    }
    assert finished["cancelled"] == 1, finished
