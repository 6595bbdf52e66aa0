"""The Triton adapter of the generation task with a stub pb_utils.

``TritonSink`` (the FINAL flag, cancellation and error codes), the metrics
publisher, and a whole ``GenerationHandler`` on the tiny model: capacity errors
are UNAVAILABLE, and ``finalize`` returns only after every accepted stream ended.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ds_triton.backend import generation as adapter
from ds_triton.backend.context import InstanceContext
from ds_triton.backend.generation_metrics import TritonMetricsPublisher
from ds_triton.devices import Placement
from ds_triton.errors import CapacityError, InvalidInputError
from ds_triton.generation.metrics import MetricsAggregator
from ds_triton.generation.outbox import CancellationWatcher, SendQueue
from ds_triton.generation.params import SamplingParams
from ds_triton.generation.request import GenerationRequest
from ds_triton.generation.sequence import FinishReason, GenerationOutput
from ds_triton.spec import ModelSpec
from tests.unit import fake_pb_utils as pb
from tests.unit.generation_support import VERSION_DIR

FINAL = pb.TRITONSERVER_RESPONSE_COMPLETE_FINAL


def make_sink(
    request: pb.DecoupledRequest, watcher: CancellationWatcher, **flags: bool
) -> tuple[adapter.TritonSink, SendQueue[adapter.TritonSink]]:
    responses: SendQueue[adapter.TritonSink] = SendQueue()
    parsed = GenerationRequest("p", SamplingParams(), stream=True, exclude_input_in_output=True, **flags)
    return adapter.TritonSink(request, request.sender, responses, parsed, watcher), responses


def next_sink(responses: SendQueue[adapter.TritonSink]) -> adapter.TritonSink:
    sink = responses.get()
    assert sink is not None
    return sink


def out(text: str, reason: FinishReason | None = None) -> GenerationOutput:
    return GenerationOutput(text, num_input_tokens=2, num_output_tokens=1, finish_reason=reason)


def text_of(response: pb.InferenceResponse) -> str:
    tensor = pb.get_output_tensor_by_name(response, "text_output")
    assert tensor is not None
    return str(tensor.as_numpy()[0].decode())


def test_tokens_stream_without_the_final_flag_until_the_last_one() -> None:
    request = pb.DecoupledRequest([])
    sink, responses = make_sink(request, CancellationWatcher(0.02), return_finish_reason=True)
    sink.send(out(" a"))
    next_sink(responses).flush()
    sink.send(out(" b"))
    sink.send(out(" c", FinishReason.LENGTH))  # the client lagged: both go in one response
    next_sink(responses).flush()
    responses.close()
    assert responses.get() is None  # nothing else was queued
    (first, flags0), (last, flags1) = request.sender.sent
    assert (text_of(first), flags0) == (" a", 0)
    assert (text_of(last), flags1) == (" b c", FINAL)
    reason = pb.get_output_tensor_by_name(last, "finish_reason")
    assert reason is not None and reason.as_numpy()[0] == b"length"


def test_cancellation_ends_with_a_cancelled_error_and_the_request_is_not_polled_after() -> None:
    request = pb.DecoupledRequest([])
    watcher = CancellationWatcher(0.02)
    sink, responses = make_sink(request, watcher)
    watcher.poll_once()
    assert not sink.is_cancelled()
    request.cancelled = True
    watcher.poll_once()
    assert sink.is_cancelled()  # what the engine reads: a flag, no round trip
    sink.send(out("", FinishReason.CANCELLED))
    next_sink(responses).flush()
    ((response, flags),) = request.sender.sent
    assert flags == FINAL and response.error() is not None
    assert response.error().code() == pb.TritonError.CANCELLED
    watcher.poll_once()  # would raise in the stub if it asked after the final response


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (CapacityError("too many concurrent requests"), pb.TritonError.UNAVAILABLE),
        (InvalidInputError("bad"), pb.TritonError.INVALID_ARG),
        (RuntimeError("device lost"), pb.TritonError.INTERNAL),
    ],
)
def test_an_error_is_the_final_response_with_its_code(error: BaseException, code: int) -> None:
    request = pb.DecoupledRequest([])
    watcher = CancellationWatcher(0.02)
    sink, responses = make_sink(request, watcher)
    sink.send(out(" a"))
    sink.fail(error)  # replaces what was not sent yet
    next_sink(responses).flush()
    ((response, flags),) = request.sender.sent
    assert flags == FINAL and response.error().code() == code
    watcher.poll_once()


def test_the_publisher_sends_aggregated_deltas_and_skips_unchanged_gauges() -> None:
    aggregator = MetricsAggregator()
    publisher = TritonMetricsPublisher({"model": "m", "version": "1"}, aggregator, interval=3600)
    families = {f.name: f for f in publisher._families.values()}
    for rows in (4, 4, 2):
        aggregator.forward_pass("decode", rows)
    aggregator.forward_pass("prefill", 2)
    aggregator.tokens_generated(12)
    aggregator.first_token(0.01)
    aggregator.occupancy(4, 1, 16)
    aggregator.sequence_finished(FinishReason.STOP)
    publisher.publish()
    publisher.publish()  # nothing new: nothing sent twice

    def metric(name: str, **labels: str) -> pb.Metric:
        return next(m for m in families[name].metrics if labels.items() <= m.labels.items())

    assert metric("ds_triton_generation_tokens_total").value == 12
    assert metric("ds_triton_generation_forward_passes_total", phase="decode").value == 3
    assert metric("ds_triton_generation_forward_passes_total", phase="prefill").value == 1
    assert sorted(metric("ds_triton_generation_batch_occupancy").observations) == [2, 4, 4]
    assert metric("ds_triton_generation_time_to_first_token_seconds").observations == [0.01]
    assert metric("ds_triton_generation_sequences", state="waiting").value == 1
    assert metric("ds_triton_generation_sequences_finished_total", reason="stop").value == 1
    publisher.close()
    assert not publisher._families


# -- a whole instance on the tiny model ------------------------------------------


def generation_request(prompt: str, **sampling: Any) -> pb.DecoupledRequest:
    def tensor(name: str, value: Any, dtype: Any = object) -> pb.Tensor:
        return pb.Tensor(name, np.array([value], dtype=dtype))

    return pb.DecoupledRequest(
        [
            tensor("text_input", prompt.encode()),
            tensor("stream", True, bool),
            tensor("return_num_output_tokens", True, bool),
            tensor("sampling_parameters", json.dumps(sampling).encode()),
        ]
    )


def instance(**generation: int) -> adapter.GenerationHandler:
    spec = ModelSpec.load(VERSION_DIR)
    if not spec.resolve_checkpoint(VERSION_DIR).is_dir():
        pytest.skip("run `make setup` to create the tiny checkpoint")
    options = dataclasses.replace(spec.generation_options, **generation)
    context = InstanceContext(
        model_name=spec.name,
        instance_name=f"{spec.name}_0",
        model_config={},
        version_dir=Path(VERSION_DIR),
        spec=dataclasses.replace(spec, generation=options),
        placement=Placement("cpu", 1),
    )
    return adapter.GenerationHandler(context)


def test_finalize_returns_only_after_every_accepted_stream_ended() -> None:
    handler = instance(max_concurrent_sequences=2, max_queued_requests=1)
    requests = [generation_request(f"stream {i}", max_tokens=40, ignore_eos=True) for i in range(3)]
    rejected = generation_request("one too many", max_tokens=4)
    handler.execute([*requests, rejected])
    ((response, flags),) = rejected.sender.sent
    assert flags == FINAL and response.error().code() == pb.TritonError.UNAVAILABLE
    assert "too many concurrent requests" in response.error().message()
    handler.finalize()  # Triton counts these as done already: the model must finish them
    for request in requests:
        assert request.sender.final
        assert all(r.error() is None for r, _ in request.sender.sent)
        counts = [pb.get_output_tensor_by_name(r, "num_output_tokens") for r, _ in request.sender.sent]
        assert sum(int(c.as_numpy()[0]) for c in counts if c is not None) == 40
