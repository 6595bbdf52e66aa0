"""Domain errors raised by model code; free of Triton so they can be unit-tested.

The Triton adapter maps each class to a ``pb_utils.TritonError`` code, so a
client sees e.g. ``INVALID_ARG`` with the message below, per request.
"""

from __future__ import annotations


class ModelServingError(Exception):
    """Base class of every error this package raises on purpose."""

    code = "INTERNAL"


class InvalidInputError(ModelServingError):
    """A request's content is wrong; the message names the field and the problem."""

    code = "INVALID_ARG"


class CapacityError(ModelServingError):
    """The model is at a configured limit (e.g. concurrent sequences); retry later."""

    code = "UNAVAILABLE"


class InferenceError(ModelServingError):
    """The forward pass itself failed; every request of that batch gets this error."""

    code = "INTERNAL"


class ModelLoadError(ModelServingError):
    """A model cannot be loaded: bad spec, missing checkpoint, unsupported architecture."""

    code = "INVALID_ARG"


class SpecError(ModelLoadError):
    """``model.json`` is malformed or inconsistent; the message names the key."""
