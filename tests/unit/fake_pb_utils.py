"""A minimal stand-in for ``triton_python_backend_utils`` for unit tests of the adapter.

Only what ``ds_triton.backend`` uses; server-level tests use the real backend.
"""

from __future__ import annotations

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


TRITONSERVER_RESPONSE_COMPLETE_FINAL = 1


class ResponseSender:
    """Records what a decoupled model sends: (response, flags) in order."""

    def __init__(self) -> None:
        self.sent: list[tuple[InferenceResponse, int]] = []

    def send(self, response: InferenceResponse | None = None, flags: int = 0) -> None:
        if self.final:
            raise TritonError("response sent after the final one", TritonError.INTERNAL)
        self.sent.append((response if response is not None else InferenceResponse([]), flags))

    @property
    def final(self) -> bool:
        return bool(self.sent) and bool(self.sent[-1][1] & TRITONSERVER_RESPONSE_COMPLETE_FINAL)


class DecoupledRequest(InferenceRequest):
    """A request of a decoupled model: a response sender, cancellation, request parameters."""

    def __init__(self, inputs: list[Tensor], parameters: str = "", request_id: str = "") -> None:
        super().__init__(inputs, request_id)
        self.sender = ResponseSender()
        self.cancelled = False
        self.cancel_checks = 0
        self._parameters = parameters

    def get_response_sender(self) -> ResponseSender:
        return self.sender

    def is_cancelled(self) -> bool:
        if self.sender.final:
            raise AssertionError("is_cancelled() after the final response (Triton may have freed it)")
        self.cancel_checks += 1
        return self.cancelled

    def parameters(self) -> str:
        return self._parameters


class Metric:
    def __init__(self, labels: dict[str, str], buckets: list[float] | None = None) -> None:
        self.labels = labels
        self.buckets = buckets
        self.value = 0.0
        self.observations: list[float] = []

    def increment(self, value: float) -> None:
        self.value += value

    def set(self, value: float) -> None:
        self.value = value

    def observe(self, value: float) -> None:
        self.observations.append(value)


class MetricFamily:
    COUNTER = 0
    GAUGE = 1
    HISTOGRAM = 2

    def __init__(self, name: str, description: str, kind: int) -> None:
        self.name = name
        self.kind = kind
        self.metrics: list[Metric] = []

    def Metric(self, labels: dict[str, str], buckets: list[float] | None = None) -> Metric:
        metric = Metric(labels, buckets)
        self.metrics.append(metric)
        return metric
