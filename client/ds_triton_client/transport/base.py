"""The transport contract, and the HTTP wire helpers both HTTP transports share."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Generator, Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from ds_triton_client.codec import Tensor
from ds_triton_client.errors import ClientError, error_from_status

Outputs = dict[str, np.ndarray]
Fields = Mapping[str, str | bool]


class SyncTransport(Protocol):
    """Blocking calls to one endpoint; ``timeout`` is the time left of the caller's deadline."""

    def server_ready(self, timeout: float) -> bool: ...
    def model_ready(self, model: str, timeout: float) -> bool: ...
    def model_config(self, model: str, timeout: float) -> dict[str, Any]: ...
    def models(self, timeout: float) -> list[dict[str, Any]]: ...
    def stats(self, model: str, timeout: float) -> dict[str, Any]: ...
    def infer(
        self, model: str, inputs: Sequence[Tensor], outputs: Sequence[str], timeout: float
    ) -> Outputs: ...
    def generate(
        self, model: str, fields: Fields, batched: bool, timeout: float
    ) -> Generator[Mapping[str, Any], None, None]: ...
    def close(self) -> None: ...


class AsyncTransport(Protocol):
    """The asyncio twin of ``SyncTransport``."""

    async def server_ready(self, timeout: float) -> bool: ...
    async def model_ready(self, model: str, timeout: float) -> bool: ...
    async def model_config(self, model: str, timeout: float) -> dict[str, Any]: ...
    async def models(self, timeout: float) -> list[dict[str, Any]]: ...
    async def stats(self, model: str, timeout: float) -> dict[str, Any]: ...
    async def infer(
        self, model: str, inputs: Sequence[Tensor], outputs: Sequence[str], timeout: float
    ) -> Outputs: ...
    def generate(
        self, model: str, fields: Fields, batched: bool, timeout: float
    ) -> AsyncGenerator[Mapping[str, Any], None]: ...
    async def close(self) -> None: ...


# --- HTTP (KServe v2 REST) wire helpers -------------------------------------------------

HEADER_LENGTH = "Inference-Header-Content-Length"


def infer_path(model: str) -> str:
    return f"/v2/models/{model}/infer"


def encode_infer_body(inputs: Sequence[Tensor], outputs: Sequence[str]) -> tuple[bytes, dict[str, str]]:
    """Body and headers of a binary-tensor infer request (tritonclient's own encoder)."""
    import tritonclient.http as httpclient

    infer_inputs = []
    for tensor in inputs:
        item = httpclient.InferInput(tensor.name, list(tensor.data.shape), tensor.datatype)
        item.set_data_from_numpy(tensor.data, binary_data=True)
        infer_inputs.append(item)
    requested = [httpclient.InferRequestedOutput(name, binary_data=True) for name in outputs]
    body, json_size = httpclient.InferenceServerClient.generate_request_body(infer_inputs, requested)
    headers = {"Content-Type": "application/octet-stream"}
    if json_size is not None:
        headers[HEADER_LENGTH] = str(json_size)
    return bytes(body), headers


def decode_infer_body(body: bytes, header_length: str | None, outputs: Sequence[str]) -> Outputs:
    """Named output arrays of an infer response (tritonclient's own decoder)."""
    import tritonclient.http as httpclient

    result = httpclient.InferenceServerClient.parse_response_body(
        body, header_length=int(header_length) if header_length else None
    )
    arrays: Outputs = {}
    for name in outputs:
        array = result.as_numpy(name)
        if array is not None:
            arrays[name] = array
    return arrays


def http_error(status: int, body: bytes, endpoint: str) -> ClientError:
    """The typed error for a non-200 answer; Triton's JSON ``error`` is the message."""
    text = body.decode("utf-8", errors="replace")
    try:
        message = str(json.loads(text).get("error", text)) if text else f"HTTP {status}"
    except (ValueError, AttributeError):
        message = text or f"HTTP {status}"
    return error_from_status(status, message, endpoint)


def generate_body(fields: Fields) -> bytes:
    """JSON body for ``/generate`` and ``/generate_stream`` (field names = input names)."""
    return json.dumps(dict(fields)).encode("utf-8")


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
