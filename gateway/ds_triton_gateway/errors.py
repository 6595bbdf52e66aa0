"""OpenAI error objects, and the one place a client failure becomes an HTTP status.

Every refusal the gateway sends is ``{"error": {"message", "type", "param", "code"}}``
with the status the OpenAI SDKs turn into their typed exceptions (400
``BadRequestError``, 401 ``AuthenticationError``, 404 ``NotFoundError``, 429
``RateLimitError``, 5xx ``InternalServerError``). A failure of Triton is never a
bare 500: it is mapped from the client's typed error here.
"""

from __future__ import annotations

import re

from ds_triton_client import (
    ClientClosedError,
    ClientError,
    DeadlineExceededError,
    InvalidInputError,
    ModelNotReadyError,
    NoHealthyEndpointError,
    OverloadedError,
    ServerConnectionError,
)

#: How long a client should wait before retrying a 429/503 (seconds, the Retry-After header).
RETRY_AFTER_S = 1


class GatewayError(Exception):
    """A refusal with its OpenAI error object.

    Attributes:
        status: HTTP status.
        message: What is wrong, naming the field when one is at fault.
        type: OpenAI's error type (``invalid_request_error``, ``server_error``, ...).
        param: The request field at fault, when one is.
        code: A short machine-readable reason.
    """

    def __init__(
        self, status: int, message: str, type: str, param: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code

    def body(self) -> dict[str, object]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(RETRY_AFTER_S)} if self.status in (429, 503) else {}


def invalid(message: str, param: str | None = None, code: str = "invalid_value") -> GatewayError:
    """400: the request itself is wrong."""
    return GatewayError(400, message, "invalid_request_error", param, code)


def unauthorized(message: str) -> GatewayError:
    """401: no API key, or not one of the gateway's."""
    return GatewayError(401, message, "invalid_request_error", None, "invalid_api_key")


def model_not_found(model: str) -> GatewayError:
    return GatewayError(
        404, f"The model {model!r} does not exist in this repository", "invalid_request_error", "model",
        "model_not_found",
    )  # fmt: skip


def too_large(limit: int) -> GatewayError:
    return GatewayError(
        413, f"request body is larger than this gateway's limit of {limit} bytes", "invalid_request_error",
        None, "request_too_large",
    )  # fmt: skip


def busy(limit: int) -> GatewayError:
    """429: the gateway itself carries as many requests as it may."""
    return GatewayError(
        429, f"the gateway is at its limit of {limit} requests in flight; retry later", "rate_limit_error",
        None, "too_many_requests",
    )  # fmt: skip


# Where Triton's message names a sampling key (``sampling_parameters.top_p ...``) or an input.
_SAMPLING_PARAM = re.compile(r"sampling(?:_parameters\.| parameter ')([a-z_]+)")
_PROMPT_INPUT = "'text_input'"


def _param(message: str, prompt_param: str) -> str | None:
    found = _SAMPLING_PARAM.search(message)
    if found:
        return found.group(1)
    if _PROMPT_INPUT in message or "prompt" in message:
        return prompt_param
    return None


def from_client_error(exc: ClientError, prompt_param: str = "prompt") -> GatewayError:
    """The status and error object for a failure reported by ``ds_triton_client``.

    Args:
        exc: The client's typed error (it already failed over and retried what was safe).
        prompt_param: The request field that became the model's text input
            (``prompt``, ``messages``, ``input``), named when Triton blames it.
    """
    message = exc.message
    if isinstance(exc, InvalidInputError):
        code = "context_length_exceeded" if "exceeds the model's context" in message else "invalid_value"
        return invalid(message, _param(message, prompt_param), code)
    if isinstance(exc, DeadlineExceededError):
        return GatewayError(
            504, f"upstream deadline passed: {message}", "server_error", None, "upstream_timeout"
        )
    if isinstance(exc, ModelNotReadyError):
        return GatewayError(
            503,
            f"the model is not ready on any replica: {message}",
            "server_error",
            "model",
            "model_not_ready",
        )
    if isinstance(exc, OverloadedError):
        return GatewayError(
            503, f"every replica is at capacity: {message}", "server_error", None, "overloaded"
        )
    if isinstance(exc, NoHealthyEndpointError | ServerConnectionError | ClientClosedError):
        return GatewayError(
            503, f"no replica can be reached: {message}", "server_error", None, "upstream_unavailable"
        )
    # INTERNAL errors, restricted APIs, streams broken after their start: the upstream failed.
    return GatewayError(502, f"upstream error: {message}", "server_error", None, "upstream_error")


def internal(exc: BaseException) -> GatewayError:
    """500 for a fault of the gateway itself (logged with its traceback by the caller)."""
    return GatewayError(
        500, f"internal gateway error: {type(exc).__name__}", "server_error", None, "internal_error"
    )
