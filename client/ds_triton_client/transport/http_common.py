"""The HTTP codec both HTTP transports share: operations to KServe v2 REST requests and back.

Bodies are encoded and decoded by tritonclient's own (static) functions; only the
sending differs between the urllib3 (sync) and aiohttp (async) transports.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ds_triton_client.endpoints import Endpoint
from ds_triton_client.errors import ClientError, DeadlineExceededError, error_from_status
from ds_triton_client.options import ClientOptions
from ds_triton_client.sse import SSEParser
from ds_triton_client.transport.base import GenerationCall, Op, Outputs, output_arrays, ssl_context

HEADER_LENGTH = "Inference-Header-Content-Length"

_ROUTES: dict[str, tuple[str, str]] = {
    "server_ready": ("GET", "/v2/health/ready"),
    "model_ready": ("GET", "/v2/models/{model}/ready"),
    "model_config": ("GET", "/v2/models/{model}/config"),
    "model_metadata": ("GET", "/v2/models/{model}"),
    "models": ("POST", "/v2/repository/index"),
    "stats": ("GET", "/v2/models/{model}/stats"),
    "infer": ("POST", "/v2/models/{model}/infer"),
}


@dataclass(frozen=True)
class HttpRequest:
    method: str
    path: str
    body: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


class HttpTransportBase:
    """What both HTTP transports share: the endpoint, its TLS context, the deadline guard,
    and turning streamed bytes into ``generate_stream`` events."""

    def __init__(self, endpoint: Endpoint, options: ClientOptions) -> None:
        self.endpoint = endpoint
        self._options = options
        # Built now, so unreadable certificate files fail when the client is made.
        self._ssl = ssl_context(options) if endpoint.tls else None

    def _guard(self, timeout: float) -> None:
        if timeout <= 0:
            raise DeadlineExceededError("deadline passed before the request was sent", self.endpoint.url)

    def _events(self, parser: SSEParser, chunk: bytes | None) -> list[dict[str, Any]]:
        """The events ``chunk`` completes; ``None`` marks the end of the stream."""
        data = parser.close() if chunk is None else parser.feed(chunk)
        return [sse_payload(item, self.endpoint.url) for item in data]


def encode(op: Op[Any], options: ClientOptions) -> HttpRequest:
    """The HTTP request of ``op``, with the client's extra headers."""
    method, template = _ROUTES[op.kind]
    body: bytes | None = None
    headers = options.http_headers()
    if op.kind == "models":
        body = b"{}"
    elif op.kind == "infer":
        body, infer_headers = _encode_infer(op)
        headers.update(infer_headers)
    return HttpRequest(method, template.format(model=op.model), body, headers)


def decode(op: Op[Any], body: bytes, headers: Mapping[str, str]) -> Any:
    """The result of ``op`` from a 200 answer."""
    if op.kind in ("server_ready", "model_ready"):
        return True
    if op.kind == "infer":
        return _decode_infer(body, headers.get(HEADER_LENGTH), op.outputs)
    data = json.loads(body) if body else {}
    return list(data) if op.kind == "models" else dict(data)


def generate_answer(body: bytes) -> dict[str, Any]:
    """The one JSON answer of ``/generate``."""
    return dict(json.loads(body)) if body else {}


def generate_request(call: GenerationCall, options: ClientOptions) -> HttpRequest:
    """``/generate`` (one JSON answer) or ``/generate_stream`` (server-sent events)."""
    route = "generate_stream" if call.stream else "generate"
    headers = {**options.http_headers(), "Content-Type": "application/json"}
    if call.stream:
        headers["Accept"] = "text/event-stream"
    body = json.dumps(dict(call.fields)).encode("utf-8")
    return HttpRequest("POST", f"/v2/models/{call.model}/{route}", body, headers)


def http_error(status: int, body: bytes, endpoint: str) -> ClientError:
    """The typed error for a non-200 answer; Triton's JSON ``error`` is the message."""
    text = body.decode("utf-8", errors="replace")
    try:
        message = str(json.loads(text).get("error", text)) if text else f"HTTP {status}"
    except (ValueError, AttributeError):
        message = text or f"HTTP {status}"
    return error_from_status(status, message, endpoint)


def sse_payload(data: str, endpoint: str) -> dict[str, Any]:
    """One ``generate_stream`` event as a dict, or the typed error it carries."""
    try:
        payload = json.loads(data)
    except ValueError as exc:
        raise error_from_status(None, f"malformed server-sent event: {data[:200]!r}", endpoint) from exc
    if isinstance(payload, dict) and "error" in payload:
        raise error_from_status(None, str(payload["error"]), endpoint)
    if not isinstance(payload, dict):
        raise error_from_status(None, f"unexpected server-sent event: {data[:200]!r}", endpoint)
    return payload


def _encode_infer(op: Op[Any]) -> tuple[bytes, dict[str, str]]:
    """Body and headers of a binary-tensor infer request (tritonclient's own encoder)."""
    import tritonclient.http as httpclient

    infer_inputs = []
    for tensor in op.inputs:
        item = httpclient.InferInput(tensor.name, list(tensor.data.shape), tensor.datatype)
        item.set_data_from_numpy(tensor.data, binary_data=True)
        infer_inputs.append(item)
    requested = [httpclient.InferRequestedOutput(name, binary_data=True) for name in op.outputs]
    body, json_size = httpclient.InferenceServerClient.generate_request_body(infer_inputs, requested)
    headers = {"Content-Type": "application/octet-stream"}
    if json_size is not None:
        headers[HEADER_LENGTH] = str(json_size)
    return bytes(body), headers


def _decode_infer(body: bytes, header_length: str | None, outputs: tuple[str, ...]) -> Outputs:
    """Named output arrays of an infer response (tritonclient's own decoder)."""
    import tritonclient.http as httpclient

    result = httpclient.InferenceServerClient.parse_response_body(
        body, header_length=int(header_length) if header_length else None
    )
    return output_arrays(result, outputs)
