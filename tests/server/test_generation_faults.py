"""A generation forward pass that raises, on a real tritonserver (issue 9, engine error paths).

``FAULTY_MODEL`` (tight_server in conftest.py) is the shipped model whose prefill
or decode forward raises when a prompt asks for it (fault_injecting_model.py).
The requests of that forward get one error that says which forward failed and
why; a stream decoding beside a failed prefill goes on undisturbed; the server
and the model stay up; the next requests succeed with the same text as before.
"""

from __future__ import annotations

import queue
import time
from typing import Any

import pytest
import tritonclient.grpc as grpcclient

from ds_triton.server_process.tritonserver import TritonServer
from tests.server.generation_client import (
    FAULTY_MODEL,
    MODEL,
    Stream,
    grpc_generate,
    record_response,
    vllm_inputs,
)

pytestmark = pytest.mark.server

# What fault_injecting_model.py looks for in a prompt (it runs in the stub; importing it
# here would patch this process's engine too).
PREFILL_FAULT = "inject a prefill fault"
DECODE_FAULT = "inject a decode fault"

RUNNING_PROMPT = "a story that keeps going"
RUNNING_SAMPLING = {"max_tokens": 400, "ignore_eos": True, "temperature": 0}
SHORT_SAMPLING = {"max_tokens": 12, "ignore_eos": True, "temperature": 0}


def generate(server: TritonServer, prompt: str, sampling: dict[str, Any]) -> Stream:
    (stream,) = grpc_generate(
        server.grpc_url, [vllm_inputs(prompt, True, sampling, counts=True)], model=FAULTY_MODEL
    )
    return stream


def assert_serving(server: TritonServer) -> None:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        assert client.is_server_live() and client.is_model_ready(FAULTY_MODEL)
        assert client.is_model_ready(MODEL)
    finally:
        client.close()


def test_a_failing_prefill_fails_its_request_while_a_running_stream_goes_on(
    tight_server: TritonServer,
) -> None:
    events: queue.Queue[tuple[Any, Any, float]] = queue.Queue()
    client = grpcclient.InferenceServerClient(tight_server.grpc_url)
    client.start_stream(callback=lambda result, error: events.put((result, error, time.monotonic())))
    running = Stream()
    try:
        inputs = vllm_inputs(RUNNING_PROMPT, True, RUNNING_SAMPLING, counts=True)
        client.async_stream_infer(FAULTY_MODEL, inputs, enable_empty_final_response=True)
        result, error, _ = events.get(timeout=120)  # decoding now
        assert error is None
        record_response(running, result)
        failed = generate(tight_server, f"please {PREFILL_FAULT} now", {"max_tokens": 8})
        failed_at = time.monotonic()
        ended_at = failed_at
        while not running.final:
            result, error, ended_at = events.get(timeout=120)
            assert error is None, error
            record_response(running, result)
            running.final = result.get_response().parameters["triton_final_response"].bool_param
    finally:
        client.stop_stream()
        client.close()
    assert failed.error is not None and not failed.texts
    assert "prefill forward pass failed (RuntimeError: injected prefill fault)" in failed.error
    assert failed_at < ended_at, "the stream ended before the fault: nothing was tested"
    assert running.tokens == RUNNING_SAMPLING["max_tokens"]
    assert_serving(tight_server)
    # Its cache rows were not disturbed: the same request alone gives the same text.
    alone = generate(tight_server, RUNNING_PROMPT, RUNNING_SAMPLING)
    assert alone.error is None and alone.text == running.text


def test_a_failing_decode_fails_its_streams_after_their_tokens_and_the_next_request_succeeds(
    tight_server: TritonServer,
) -> None:
    before = generate(tight_server, "hello there", SHORT_SAMPLING)
    assert before.error is None and before.tokens == 12
    failed = generate(tight_server, f"please {DECODE_FAULT} now", {"max_tokens": 50})
    assert failed.error is not None
    assert "decode forward pass failed (RuntimeError: injected decode fault)" in failed.error
    assert "the model is still serving" in failed.error
    assert_serving(tight_server)
    after = generate(tight_server, "hello there", SHORT_SAMPLING)
    assert after.error is None and after.text == before.text
