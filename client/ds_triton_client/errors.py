"""Typed client errors, each carrying the server's own message.

Every failure a caller can see is one of these classes, whatever the protocol:
``map_error`` turns tritonclient, aiohttp, urllib3 and gRPC failures into them,
so retry and failover decisions are made on the class, not on strings spread
through the code.
"""

from __future__ import annotations

import builtins
import socket

from ds_triton_interface import CAPACITY_MESSAGES

__all__ = [
    "ClientClosedError",
    "ClientError",
    "DeadlineExceededError",
    "InvalidInputError",
    "ModelNotReadyError",
    "NoHealthyEndpointError",
    "OverloadedError",
    "PermissionDeniedError",
    "ServerConnectionError",
    "ServerError",
    "StreamInterruptedError",
    "error_from_status",
]


class ClientError(Exception):
    """Base class of every error the client raises.

    Attributes:
        message: The server's message (or the local cause) without decoration.
        endpoint: ``scheme://host:port`` of the endpoint that answered, when known.
        status: The protocol status (``"400"``, ``"StatusCode.UNAVAILABLE"``), when known.
    """

    #: Whether the request certainly did not run and may be sent again (to any endpoint).
    retryable = False
    #: Whether this failure says something about the endpoint's health (passive ejection).
    counts_against_endpoint = False

    def __init__(self, message: str, endpoint: str | None = None, status: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.endpoint = endpoint
        self.status = status

    def __str__(self) -> str:
        where = f" [{self.endpoint}]" if self.endpoint else ""
        return f"{self.message}{where}"


class InvalidInputError(ClientError):
    """The server rejected the request's content (``INVALID_ARG`` / HTTP 400)."""


class ModelNotReadyError(ClientError):
    """The model is unknown, loading or unloaded on that endpoint; another may serve it.

    Retried on another endpoint, but not counted for ejection: a misspelt model
    name must not take healthy servers out (active checks watch model readiness).
    """

    retryable = True


class OverloadedError(ClientError):
    """The server is at capacity (``UNAVAILABLE`` / HTTP 503, queue full, or the generation
    model's documented capacity messages, which Triton's HTTP generate endpoint sends as 400);
    the request did not run, so it is retried on another endpoint."""

    retryable = True
    counts_against_endpoint = True


class PermissionDeniedError(ClientError):
    """The API is restricted on that server (an admin key is missing or wrong): HTTP 401/403,
    or gRPC's "This protocol is restricted" answer. Never retried."""


class ServerConnectionError(ClientError, builtins.ConnectionError):
    """The endpoint could not be reached or dropped the connection before answering."""

    retryable = True
    counts_against_endpoint = True


class DeadlineExceededError(ClientError, builtins.TimeoutError):
    """The per-call deadline passed before an answer arrived."""


class ServerError(ClientError):
    """The server failed while running the request (``INTERNAL`` / HTTP 500)."""


class StreamInterruptedError(ClientError):
    """A stream broke after it had started; it is never retried (pieces were already delivered)."""


class ClientClosedError(ClientError):
    """The client was used after ``close()``/``aclose()``; nothing was sent."""


class NoHealthyEndpointError(ClientError):
    """Every endpoint is ejected or failing; the message lists the last error of each."""

    retryable = True


_RESTRICTED_HINTS = ("is restricted, expecting header",)

# "is not healthy": Triton's answer for an instance whose stub died (until the supervisor
# unloads the model); the request did not complete there, so another endpoint may take it.
_NOT_READY_HINTS = (
    "unknown model",
    "is not found",
    "not ready",
    "is not available",
    "unavailable model",
    "is not healthy",
)

_CONNECT_HINTS = ("connect", "socket closed", "connection reset", "broken pipe", "end of tcp stream")

_OVERLOAD_HINTS = (
    "retry later",
    "at capacity",
    "queue is full",
    "too many",
    "shutting down",
    "try again",
    "unloaded",
)
_INVALID_HINTS = (
    "invalid",
    "must be",
    "expected",
    "is empty",
    "not supported",
    "exceeds",
    "unknown",
    "missing",
)

_GRPC_CODES: dict[str, type[ClientError]] = {
    "PERMISSION_DENIED": PermissionDeniedError,
    "UNAUTHENTICATED": PermissionDeniedError,
    "INVALID_ARGUMENT": InvalidInputError,
    "OUT_OF_RANGE": InvalidInputError,
    "FAILED_PRECONDITION": InvalidInputError,
    "UNIMPLEMENTED": InvalidInputError,
    "NOT_FOUND": ModelNotReadyError,
    "UNAVAILABLE": OverloadedError,
    "RESOURCE_EXHAUSTED": OverloadedError,
    "DEADLINE_EXCEEDED": DeadlineExceededError,
    "INTERNAL": ServerError,
    "UNKNOWN": ServerError,
}

_HTTP_CODES: dict[int, type[ClientError]] = {
    400: InvalidInputError,
    401: PermissionDeniedError,
    403: PermissionDeniedError,
    404: ModelNotReadyError,
    408: DeadlineExceededError,
    429: OverloadedError,
    500: ServerError,
    502: ServerConnectionError,
    503: OverloadedError,
    504: DeadlineExceededError,
}


def error_from_status(status: str | int | None, message: str, endpoint: str | None = None) -> ClientError:
    """The typed error for a protocol status and the server's message.

    Args:
        status: HTTP status code, gRPC status (``"StatusCode.X"`` or ``"X"``) or None.
        message: The server's error message, kept verbatim.
        endpoint: The endpoint that answered.

    Returns:
        The matching ``ClientError`` subclass instance.
    """
    lowered = message.lower()
    text = str(status) if status is not None else ""
    code = text.removeprefix("StatusCode.")
    if code in ("", "UNAVAILABLE", "CANCELLED") and any(hint in lowered for hint in _CONNECT_HINTS):
        # gRPC reports a refused or dropped connection as UNAVAILABLE.
        return ServerConnectionError(message, endpoint, text or None)
    if any(hint in lowered for hint in _RESTRICTED_HINTS):
        # Triton refuses a restricted gRPC protocol with UNAVAILABLE; it is not a capacity error.
        return PermissionDeniedError(message, endpoint, text or None)
    if any(hint in lowered for hint in CAPACITY_MESSAGES):
        # The generation model's capacity errors: UNAVAILABLE where Triton passes the code
        # through, 400 from the HTTP generate endpoints, no code at all in a gRPC stream.
        return OverloadedError(message, endpoint, text or None)
    if any(hint in lowered for hint in _NOT_READY_HINTS):
        # Triton answers "unknown model"/"not ready" with 400 (HTTP) or INVALID_ARGUMENT/
        # UNAVAILABLE (gRPC); the request never ran, so another endpoint may take it.
        return ModelNotReadyError(message, endpoint, text or None)
    if "exceeds maximum queue size" in lowered:
        return OverloadedError(message, endpoint, text or None)
    if code == "DEADLINE_EXCEEDED" or (not text and ("deadline" in lowered or "timed out" in lowered)):
        return DeadlineExceededError(message, endpoint, text or None)
    if text.isdigit():
        return _HTTP_CODES.get(int(text), ServerError)(message, endpoint, text)
    if code in _GRPC_CODES:
        return _GRPC_CODES[code](message, endpoint, text)
    if not text:
        # gRPC stream responses carry only a message, no status code: classify by wording.
        if any(hint in lowered for hint in _OVERLOAD_HINTS):
            return OverloadedError(message, endpoint, None)
        if any(hint in lowered for hint in _INVALID_HINTS):
            return InvalidInputError(message, endpoint, None)
    return ServerError(message, endpoint, text or None)


def map_error(exc: BaseException, endpoint: str | None = None) -> ClientError:
    """Turn any transport exception into a typed ``ClientError`` (idempotent)."""
    if isinstance(exc, ClientError):
        if exc.endpoint is None:
            exc.endpoint = endpoint
        return exc
    # Imported lazily: each is a transport dependency the pure modules must not need.
    from tritonclient.utils import InferenceServerException

    if isinstance(exc, InferenceServerException):
        return error_from_status(exc.status(), exc.message() or str(exc), endpoint)
    if isinstance(exc, builtins.TimeoutError | socket.timeout):
        return DeadlineExceededError(str(exc) or "timed out", endpoint)
    if isinstance(exc, builtins.ConnectionError | OSError):
        return ServerConnectionError(str(exc) or type(exc).__name__, endpoint)
    try:
        import aiohttp

        if isinstance(exc, aiohttp.ServerTimeoutError):
            return DeadlineExceededError(str(exc) or "timed out", endpoint)
        if isinstance(exc, aiohttp.ClientConnectionError | aiohttp.ClientPayloadError):
            return ServerConnectionError(str(exc) or type(exc).__name__, endpoint)
    except ImportError:  # pragma: no cover - aiohttp ships with tritonclient[http]
        pass
    try:
        import urllib3.exceptions as u3

        # NewConnectionError subclasses urllib3's TimeoutError, so test it first.
        # An SSLError is a handshake or certificate failure: that endpoint cannot be reached.
        if isinstance(exc, u3.ProtocolError | u3.NewConnectionError | u3.MaxRetryError | u3.SSLError):
            return ServerConnectionError(str(exc), endpoint)
        if isinstance(exc, u3.TimeoutError):
            return DeadlineExceededError(str(exc) or "timed out", endpoint)
    except ImportError:  # pragma: no cover
        pass
    try:
        import grpc

        if isinstance(exc, grpc.RpcError) and hasattr(exc, "code"):
            return error_from_status(str(exc.code()), str(exc.details()), endpoint)
    except ImportError:  # pragma: no cover
        pass
    return ClientError(f"{type(exc).__name__}: {exc}", endpoint)
