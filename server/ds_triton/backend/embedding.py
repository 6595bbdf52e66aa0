"""Triton side of the embedding task: tensors in, the batch's forward passes, tensors out."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

from ds_triton.backend.context import InstanceContext
from ds_triton.backend.errors import error_response
from ds_triton.embedding.batch import EmbeddingOutput, run_batch
from ds_triton.embedding.encoder import TextEncoder
from ds_triton.embedding.request import EmbeddingRequest
from ds_triton.errors import InferenceError, InvalidInputError, ModelServingError
from ds_triton.heap import IdleTrimmer, MemoryBreakdown, breakdown, fix_mmap_threshold
from ds_triton.loading import load_model
from ds_triton.profiling import open_timeline
from ds_triton_interface import EMBED_EMBEDDING as OUTPUT_EMBEDDING
from ds_triton_interface import EMBED_TEXT as INPUT_TEXT
from ds_triton_interface import EMBED_TRUNCATED as OUTPUT_TRUNCATED

LOG = logging.getLogger(__name__)

# Activation tensors of this size or more get their own mapping, unmapped on free.
MMAP_THRESHOLD_BYTES = 1 << 20
# The heap is trimmed once an instance has been idle this long.
TRIM_AFTER_IDLE_S = 1.0
LOG_RELEASED_MB = 16.0  # smaller trims are logged at DEBUG only


class EmbeddingHandler:
    """Serves one embedding instance.

    One ``execute`` tokenises its requests together and runs them as the few
    forward passes the encoder plans (length groups within the token budget).
    Memory comes back after a burst: large activations are mmapped and unmapped
    on free, and the rest of the heap is trimmed once the instance is idle.
    """

    def __init__(self, context: InstanceContext) -> None:
        self._name = context.instance_name
        self._options = context.spec.embedding_options
        fix_mmap_threshold(MMAP_THRESHOLD_BYTES)
        loaded = load_model(context.spec, context.version_dir, context.placement)
        self._timeline = open_timeline(context.model_name, context.instance_name, context.spec.profile)
        self._encoder = TextEncoder(loaded, self._options, self._timeline)
        LOG.info(
            "%s: embedding dim %d, max_length %d, truncate %s",
            context.instance_name,
            self._encoder.dimension,
            self._encoder.max_length,
            self._options.truncate,
        )
        LOG.info("%s memory after load: %s", self._name, breakdown().summary())
        self._trimmer = IdleTrimmer(TRIM_AFTER_IDLE_S, on_trim=self._trimmed)

    def execute(self, requests: list[Any]) -> list[Any]:
        self._trimmer.busy()
        try:
            return self._embed(requests)
        finally:
            self._trimmer.idle()

    def finalize(self) -> None:
        self._trimmer.stop()
        self._encoder = None  # type: ignore[assignment]
        if self._timeline is not None:
            self._timeline.close()

    def _embed(self, requests: list[Any]) -> list[Any]:
        parsed = [_parse(request) for request in requests]
        try:
            outcomes = run_batch(self._encoder, parsed, truncate=self._options.truncate)
        except Exception as exc:  # a failed forward fails this batch, not the server
            LOG.exception("embedding forward pass failed for %d requests", len(requests))
            failure = InferenceError(f"forward pass failed: {type(exc).__name__}: {exc}")
            outcomes = [p if isinstance(p, ModelServingError) else failure for p in parsed]
        return [_response(outcome) for outcome in outcomes]

    def _trimmed(self, before: MemoryBreakdown, after: MemoryBreakdown) -> None:
        released = before.rss - after.rss
        level = logging.INFO if released >= LOG_RELEASED_MB else logging.DEBUG
        LOG.log(level, "%s idle: returned %.0f MB; %s", self._name, released, after.summary())


def _parse(request: Any) -> EmbeddingRequest | ModelServingError:
    tensor = pb_utils.get_input_tensor_by_name(request, INPUT_TEXT)
    if tensor is None:
        return InvalidInputError(f"missing input '{INPUT_TEXT}'")
    # Triton has already checked the datatype (BYTES) and shape against the config.
    try:
        return EmbeddingRequest.from_raw(tensor.as_numpy().reshape(-1).tolist(), INPUT_TEXT)
    except ModelServingError as exc:
        return exc


def _response(outcome: EmbeddingOutput | BaseException) -> Any:
    if isinstance(outcome, BaseException):
        return error_response(outcome)
    return pb_utils.InferenceResponse(
        output_tensors=[
            pb_utils.Tensor(OUTPUT_EMBEDDING, np.ascontiguousarray(outcome.embeddings, dtype=np.float32)),
            pb_utils.Tensor(OUTPUT_TRUNCATED, outcome.truncated.reshape(-1, 1)),
        ]
    )
