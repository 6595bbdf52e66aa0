"""Triton side of the generation task (decoupled): requests in, streamed responses out.

``execute`` only parses and queues; the engine thread decodes all sequences in
one running batch and never talks to the server process itself. Around it:

- a response thread sends what the engine produces, so sending to slow clients
  never stalls decoding (outputs that pile up for one client are merged into one
  response, like vLLM does);
- a watcher thread polls ``request.is_cancelled()`` and keeps a flag the engine
  reads;
- a publisher thread turns the engine's in-process metrics into Triton metrics
  once a second.

Every request gets exactly one response with the FINAL flag: its last token,
its error, or its cancellation. Triton counts a decoupled request as done once
``execute`` returns, so ``finalize`` first lets the engine finish every accepted
request (bounded by the drain timeout) before it stops anything.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

from ds_triton.backend.context import InstanceContext
from ds_triton.backend.errors import error_response
from ds_triton.backend.generation_metrics import TritonMetricsPublisher
from ds_triton.errors import ModelServingError
from ds_triton.generation.engine import GenerationEngine
from ds_triton.generation.limits import context_length
from ds_triton.generation.logprobs import logprobs_json
from ds_triton.generation.metrics import MetricsAggregator
from ds_triton.generation.model_runner import ModelRunner, pad_token_id
from ds_triton.generation.outbox import CancellationWatcher, Outbox, SendQueue
from ds_triton.generation.request import FLAG_INPUTS, GenerationRequest, RawGenerationInputs
from ds_triton.generation.sequence import FinishReason, GenerationOutput
from ds_triton.loading import LoadedModel, load_model
from ds_triton.profiling import open_timeline
from ds_triton_interface import (
    CUMULATIVE_LOGPROB,
    FINISH_REASON,
    LOGPROBS,
    NUM_INPUT_TOKENS,
    NUM_OUTPUT_TOKENS,
    PROMPT_LOGPROBS,
    SAMPLING_PARAMETERS,
    TEXT_INPUT,
    TEXT_OUTPUT,
)

LOG = logging.getLogger(__name__)

FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL

# How often the watcher asks whether each request was cancelled (see CancellationWatcher).
CANCEL_POLL_SECONDS = 0.02
# How long ``finalize`` lets accepted requests finish before failing them with UNAVAILABLE.
DRAIN_TIMEOUT_ENV = "DS_TRITON_DRAIN_TIMEOUT_S"
DEFAULT_DRAIN_TIMEOUT_S = 30.0


class GenerationHandler:
    """Serves one generation instance: the engine thread and the threads around it."""

    def __init__(self, context: InstanceContext) -> None:
        options = context.spec.generation_options
        loaded, runner = _load_runner(context)
        self._runner = runner
        tokenizer = loaded.tokenizer
        aggregator = MetricsAggregator()
        self._timeline = open_timeline(context.model_name, context.instance_name, context.spec.profile)
        self._engine = GenerationEngine(
            runner,
            tokenizer,
            options,
            max_positions=context_length(loaded.config, tokenizer),
            eos_token_id=tokenizer.eos_token_id,
            metrics=aggregator,
            timeline=self._timeline,
            vocab_size=getattr(loaded.config, "vocab_size", None),
        )
        self._metrics = TritonMetricsPublisher(
            {"model": context.model_name, "version": context.version_dir.name}, aggregator
        )
        self._watcher = CancellationWatcher(CANCEL_POLL_SECONDS)
        self._responses: SendQueue[TritonSink] = SendQueue()
        self._response_thread = threading.Thread(
            target=self._send_responses, name="generation-responses"
        )
        self._response_thread.start()
        self._watcher.start()
        self._metrics.start()
        self._engine.start()
        LOG.info(
            "%s: generation with %d cache rows of %d tokens, %d-token budget, prefill chunks of "
            "%d tokens, %d queued",
            context.instance_name, options.max_concurrent_sequences, self._engine.row_tokens,
            options.max_batch_total_tokens, options.max_prefill_tokens, options.max_queued_requests,
        )

    def execute(self, requests: list[Any]) -> None:
        """Queue each request; errors are answered at once, per request."""
        options = self._engine.options
        for request in requests:
            sender = request.get_response_sender()
            try:
                parsed = GenerationRequest.from_raw(_raw_inputs(request), options)
                sink = TritonSink(request, sender, self._responses, parsed, self._watcher)
                try:
                    self._engine.submit(parsed, sink)
                except BaseException:
                    sink.close()
                    raise
            except ModelServingError as exc:
                sender.send(error_response(exc), flags=FINAL)
            except Exception as exc:  # never leave a request without its FINAL response
                LOG.exception("unexpected error while queueing a generation request")
                sender.send(error_response(exc), flags=FINAL)
        return None

    def finalize(self) -> None:
        """Finish accepted requests (up to the drain timeout), then stop every thread."""
        timeout = drain_timeout()
        if not self._engine.drain(timeout):
            LOG.warning("requests still in flight after %.0f s get UNAVAILABLE", timeout)
        self._engine.stop()
        self._runner.close()  # a tensor-parallel instance stops its workers here
        self._responses.close()  # the thread sends everything queued, then ends
        self._response_thread.join()
        self._watcher.stop()
        self._metrics.close()
        if self._timeline is not None:
            self._timeline.close()

    def _send_responses(self) -> None:
        while True:
            sink = self._responses.get()
            if sink is None:
                return
            try:
                sink.flush()
            except Exception:  # a client that went away must not stop the others' responses
                LOG.exception("could not send a generation response")


def _load_runner(context: InstanceContext) -> tuple[LoadedModel, ModelRunner]:
    """The model and its runner: on this instance's device, or sharded over tensor-parallel ranks."""
    if context.spec.deployment.tensor_parallel > 1:
        from ds_triton.tensor_parallel.leader import start_tensor_parallel

        # A broken group ends this process, so that `ds-triton serve` loads the model again.
        return start_tensor_parallel(context.spec, context.version_dir, exit_when_broken=True)
    loaded = load_model(context.spec, context.version_dir, context.placement)
    runner = ModelRunner(loaded.engine, loaded.module, loaded.device, pad_token_id(loaded.tokenizer))
    return loaded, runner


def drain_timeout() -> float:
    """Seconds ``finalize`` waits for accepted requests (``$DS_TRITON_DRAIN_TIMEOUT_S``, default 30)."""
    raw = os.environ.get(DRAIN_TIMEOUT_ENV, "").strip()
    try:
        value = float(raw) if raw else DEFAULT_DRAIN_TIMEOUT_S
    except ValueError:
        LOG.warning("ignoring %s=%r (not a number of seconds)", DRAIN_TIMEOUT_ENV, raw)
        return DEFAULT_DRAIN_TIMEOUT_S
    return max(0.0, value)


class TritonSink:
    """Delivers one sequence's outputs as Triton responses through the response thread.

    The engine thread only buffers outputs (``Outbox``) and reads the
    cancellation flag the watcher keeps; the response thread builds and sends
    the responses, merging what piled up for a slow client.
    """

    def __init__(
        self,
        request: Any,
        sender: Any,
        responses: SendQueue[TritonSink],
        parsed: GenerationRequest,
        watcher: CancellationWatcher,
    ) -> None:
        self._sender = sender
        self._responses = responses
        self._parsed = parsed
        self._outbox = Outbox()
        self._sent_any = False  # set by the sending thread; read by the engine thread
        self._watcher = watcher
        self._cancel = watcher.watch(request.is_cancelled)

    def is_cancelled(self) -> bool:
        return self._cancel.is_set()

    def send(self, output: GenerationOutput) -> None:
        if self._outbox.put(output):
            self._responses.put(self, first=not self._sent_any)

    def fail(self, error: BaseException) -> None:
        if self._outbox.put_error(error):
            self._responses.put(self, first=not self._sent_any)

    def close(self) -> None:
        """Stop watching for cancellation (before the final response; Triton may then free it)."""
        self._watcher.unwatch(self._cancel)

    def flush(self) -> None:
        """Send what is pending as one response (response thread only)."""
        drained = self._outbox.drain()
        if drained.error is not None:
            self.close()
            self._sender.send(error_response(drained.error), flags=FINAL)
            return
        output = drained.output
        if output is None:
            return
        if not output.final:
            self._sender.send(pb_utils.InferenceResponse(output_tensors=self._tensors(output)), flags=0)
            self._sent_any = True
            return
        self.close()
        if output.finish_reason is FinishReason.CANCELLED:
            error = pb_utils.TritonError("request was cancelled", pb_utils.TritonError.CANCELLED)
            response = pb_utils.InferenceResponse(output_tensors=[], error=error)
        else:
            response = pb_utils.InferenceResponse(output_tensors=self._tensors(output))
        self._sender.send(response, flags=FINAL)

    def _tensors(self, output: GenerationOutput) -> list[Any]:
        tensors = [
            pb_utils.Tensor(TEXT_OUTPUT, np.array([output.text.encode("utf-8")], dtype=np.object_))
        ]
        if self._parsed.return_num_input_tokens:
            tensors.append(
                pb_utils.Tensor(NUM_INPUT_TOKENS, np.array([output.num_input_tokens], np.uint32))
            )
        if self._parsed.return_num_output_tokens:
            tensors.append(
                pb_utils.Tensor(NUM_OUTPUT_TOKENS, np.array([output.num_output_tokens], np.uint32))
            )
        if self._parsed.return_finish_reason:
            # vLLM writes str(finish_reason), i.e. "None" before the last response.
            reason = output.finish_reason.value if output.finish_reason else "None"
            tensors.append(pb_utils.Tensor(FINISH_REASON, np.array([reason.encode()], np.object_)))
        if self._parsed.return_cumulative_logprob and output.cumulative_logprob is not None:
            value = np.array([output.cumulative_logprob], np.float32)
            tensors.append(pb_utils.Tensor(CUMULATIVE_LOGPROB, value))
        if self._parsed.return_logprobs:
            text = logprobs_json(output.logprobs).encode("utf-8")  # "null" without the logprobs key
            tensors.append(pb_utils.Tensor(LOGPROBS, np.array([text], np.object_)))
        if output.prompt_logprobs is not None:
            text = logprobs_json(output.prompt_logprobs).encode("utf-8")
            tensors.append(pb_utils.Tensor(PROMPT_LOGPROBS, np.array([text], np.object_)))
        return tensors


def _raw_inputs(request: Any) -> RawGenerationInputs:
    text = pb_utils.get_input_tensor_by_name(request, TEXT_INPUT)
    flags: dict[str, bool] = {}
    for name in FLAG_INPUTS:
        tensor = pb_utils.get_input_tensor_by_name(request, name)
        if tensor is not None:
            flags[name] = bool(np.asarray(tensor.as_numpy()).reshape(-1)[0])
    sampling = pb_utils.get_input_tensor_by_name(request, SAMPLING_PARAMETERS)
    sampling_value = None
    if sampling is not None:
        values = np.asarray(sampling.as_numpy()).reshape(-1)
        sampling_value = values[0] if values.size else b""
    return RawGenerationInputs(
        text_input=None if text is None else np.asarray(text.as_numpy()).reshape(-1).tolist(),
        flags=flags,
        sampling_parameters=sampling_value,
        parameters=request.parameters() or "",
    )

