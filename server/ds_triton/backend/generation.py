"""Triton side of the generation task (decoupled): requests in, streamed responses out.

``execute`` only parses and queues; the engine thread decodes all sequences in
one running batch, and a response thread sends what it produces, so sending to
slow clients never stalls decoding (outputs that pile up for one client are
merged into one response, like vLLM does). Every request gets exactly one response
with the FINAL flag: its last token, its error, or its cancellation.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

from ds_triton.backend.context import InstanceContext
from ds_triton.backend.errors import error_response
from ds_triton.backend.generation_metrics import TritonGenerationMetrics
from ds_triton.errors import ModelServingError
from ds_triton.generation.engine import GenerationEngine
from ds_triton.generation.model_runner import ModelRunner
from ds_triton.generation.outbox import Outbox, PolledFlag
from ds_triton.generation.request import FLAG_INPUTS, GenerationRequest, RawGenerationInputs
from ds_triton.generation.sequence import FinishReason, GenerationOutput
from ds_triton.loading import load_model
from ds_triton_interface import (
    FINISH_REASON,
    NUM_INPUT_TOKENS,
    NUM_OUTPUT_TOKENS,
    SAMPLING_PARAMETERS,
    TEXT_INPUT,
    TEXT_OUTPUT,
)

LOG = logging.getLogger(__name__)

FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL

# How stale a sequence's cancellation flag may be (see PolledFlag).
CANCEL_POLL_SECONDS = 0.02


class GenerationHandler:
    """Serves one generation instance: an engine thread and a response thread."""

    def __init__(self, context: InstanceContext) -> None:
        options = context.spec.generation_options
        loaded = load_model(context.spec, context.version_dir, context.placement)
        tokenizer = loaded.tokenizer
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        runner = ModelRunner(loaded.engine, loaded.module, loaded.device, pad_id)
        self._metrics = TritonGenerationMetrics(
            {"model": context.model_name, "version": context.version_dir.name}
        )
        self._engine = GenerationEngine(
            runner,
            tokenizer,
            options,
            max_positions=_context_length(loaded.config, tokenizer),
            eos_token_id=tokenizer.eos_token_id,
            metrics=self._metrics,
        )
        self._responses: queue.Queue[TritonSink | None] = queue.Queue()
        self._response_thread = threading.Thread(
            target=self._send_responses, name="generation-responses"
        )
        self._response_thread.start()
        self._engine.start()
        LOG.info(
            "%s: generation with up to %d concurrent sequences (%d queued), context %d tokens",
            context.instance_name, options.max_concurrent_sequences,
            options.max_queued_requests, self._engine.max_positions,
        )

    def execute(self, requests: list[Any]) -> None:
        """Queue each request; errors are answered at once, per request."""
        options = self._engine.options
        for request in requests:
            sender = request.get_response_sender()
            try:
                parsed = GenerationRequest.from_raw(_raw_inputs(request), options)
                sink = TritonSink(request, sender, self._responses, parsed)
                self._engine.submit(parsed, sink)
            except ModelServingError as exc:
                sender.send(error_response(exc), flags=FINAL)
            except Exception as exc:  # never leave a request without its FINAL response
                LOG.exception("unexpected error while queueing a generation request")
                sender.send(error_response(exc), flags=FINAL)
        return None

    def finalize(self) -> None:
        """Stop the engine (pending requests get UNAVAILABLE), then the response thread."""
        self._engine.stop()
        self._responses.put(None)
        self._response_thread.join()
        self._metrics.close()

    def _send_responses(self) -> None:
        while True:
            sink = self._responses.get()
            if sink is None:
                return
            try:
                sink.flush()
            except Exception:  # a client that went away must not stop the others' responses
                LOG.exception("could not send a generation response")


class TritonSink:
    """Delivers one sequence's outputs as Triton responses through the response thread.

    The engine thread only buffers outputs (``Outbox``); the response thread
    builds and sends them, merging what piled up for a slow client.
    """

    def __init__(
        self,
        request: Any,
        sender: Any,
        responses: queue.Queue[TritonSink | None],
        parsed: GenerationRequest,
    ) -> None:
        self._sender = sender
        self._responses = responses
        self._parsed = parsed
        self._outbox = Outbox()
        self.is_cancelled = PolledFlag(request.is_cancelled, CANCEL_POLL_SECONDS)

    def send(self, output: GenerationOutput) -> None:
        if self._outbox.put(output):
            self._responses.put(self)

    def fail(self, error: BaseException) -> None:
        if self._outbox.put_error(error):
            self._responses.put(self)

    def flush(self) -> None:
        """Send what is pending as one response (response thread only)."""
        drained = self._outbox.drain()
        if drained.error is not None:
            self._sender.send(error_response(drained.error), flags=FINAL)
            return
        output = drained.output
        if output is None:
            return
        flags = FINAL if output.final else 0
        if output.finish_reason is FinishReason.CANCELLED:
            error = pb_utils.TritonError("request was cancelled", pb_utils.TritonError.CANCELLED)
            response = pb_utils.InferenceResponse(output_tensors=[], error=error)
        else:
            response = pb_utils.InferenceResponse(output_tensors=self._tensors(output))
        self._sender.send(response, flags=flags)

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


def _context_length(config: Any, tokenizer: Any) -> int:
    """Longest sequence the model takes: its position table, else the tokenizer's limit."""
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    limit = getattr(tokenizer, "model_max_length", 0)
    return int(limit) if 0 < limit < 1_000_000 else 2048
