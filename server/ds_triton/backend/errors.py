"""Map domain errors to ``pb_utils.TritonError`` codes, one per request."""

from __future__ import annotations

import logging

import triton_python_backend_utils as pb_utils

from ds_triton.errors import ModelServingError

LOG = logging.getLogger(__name__)


def to_triton_error(error: BaseException) -> pb_utils.TritonError:
    """A ``TritonError`` whose code follows the domain class and whose text is the message."""
    if isinstance(error, ModelServingError):
        code = getattr(pb_utils.TritonError, error.code, pb_utils.TritonError.INTERNAL)
        return pb_utils.TritonError(str(error), code)
    LOG.error("unexpected error while serving a request", exc_info=error)
    return pb_utils.TritonError(
        f"internal error: {type(error).__name__}: {error}", pb_utils.TritonError.INTERNAL
    )


def error_response(error: BaseException) -> pb_utils.InferenceResponse:
    return pb_utils.InferenceResponse(output_tensors=[], error=to_triton_error(error))
