"""A minimal stand-in for ``triton_python_backend_utils`` for unit tests of the adapter.

Only what ``ds_triton.backend`` uses; server-level tests use the real backend.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class TritonError(Exception):
    UNKNOWN = 0
    INTERNAL = 1
    NOT_FOUND = 2
    INVALID_ARG = 3
    UNAVAILABLE = 4
    UNSUPPORTED = 5
    ALREADY_EXISTS = 6
    CANCELLED = 7

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self._message = message
        self._code = code

    def message(self) -> str:
        return self._message

    def code(self) -> int:
        return self._code


class Tensor:
    def __init__(self, name: str, array: np.ndarray) -> None:
        self._name = name
        self._array = array

    def name(self) -> str:
        return self._name

    def as_numpy(self) -> np.ndarray:
        return self._array


class InferenceRequest:
    def __init__(self, inputs: list[Tensor], request_id: str = "") -> None:
        self.inputs = {t.name(): t for t in inputs}
        self._id = request_id

    def request_id(self) -> str:
        return self._id


class InferenceResponse:
    def __init__(self, output_tensors: list[Tensor], error: TritonError | None = None) -> None:
        self.output_tensors = output_tensors
        self.error_ = error

    def has_error(self) -> bool:
        return self.error_ is not None

    def error(self) -> TritonError | None:
        return self.error_


def get_input_tensor_by_name(request: InferenceRequest, name: str) -> Tensor | None:
    return request.inputs.get(name)


def get_output_tensor_by_name(response: InferenceResponse, name: str) -> Tensor | None:
    return next((t for t in response.output_tensors if t.name() == name), None)


class Logger:
    @staticmethod
    def log_info(message: Any) -> None:
        pass

    log_warn = log_error = log_verbose = log_info
