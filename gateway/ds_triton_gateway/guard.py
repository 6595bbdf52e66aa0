"""What every ``/v1`` request passes before a route sees it, and what is recorded after.

An ASGI middleware, so it also bounds streamed bodies and times streamed answers:
the API key (401), the body size (413, from ``Content-Length`` at once, else while
the body is read), the requests in flight (429), then the request count, status
and duration once the last byte is sent (or the client left).
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ds_triton_gateway.auth import ApiKeys
from ds_triton_gateway.errors import GatewayError, busy, too_large, unauthorized
from ds_triton_gateway.metrics import GatewayMetrics

ROUTES = ("/v1/embeddings", "/v1/completions", "/v1/chat/completions", "/v1/models")
MODEL_STATE = "model"  # the route stores the served model's name here (scope["state"])


def route_label(path: str) -> str:
    for route in ROUTES:
        if path == route or path.startswith(route + "/"):
            return route
    return "other"


async def send_error(send: Send, error: GatewayError) -> None:
    body = orjson.dumps(error.body())
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in error.headers().items()]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


class Guard:
    """Auth, size and concurrency limits, and request metrics for ``/v1/*``."""

    def __init__(
        self, app: ASGIApp, keys: ApiKeys, max_bytes: int, max_in_flight: int, metrics: GatewayMetrics
    ) -> None:
        self.app = app
        self.keys = keys
        self.max_bytes = max_bytes
        self.max_in_flight = max_in_flight
        self.metrics = metrics
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        route = route_label(scope["path"])
        state: dict[str, Any] = scope.setdefault("state", {})
        status = 0
        recorded = False

        def record() -> None:
            nonlocal recorded
            if not recorded:
                recorded = True
                model = str(state.get(MODEL_STATE, ""))
                self.metrics.finished(route, model, status or 499, time.perf_counter() - started)

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                record()

        refusal = self._refusal(scope)
        if refusal is not None:
            await send_error(sending, refusal)
            return
        self.in_flight += 1
        self.metrics.in_flight.inc()
        try:
            await self.app(scope, self._bounded(receive), sending)
        finally:
            self.in_flight -= 1
            self.metrics.in_flight.dec()
            record()  # a client that left before the end: counted as 499, as nginx does

    def _refusal(self, scope: Scope) -> GatewayError | None:
        headers = dict(scope["headers"])
        if self.keys.required:
            authorization = headers.get(b"authorization", b"").decode("latin-1")
            if not authorization:
                return unauthorized("You didn't provide an API key: send 'Authorization: Bearer <key>'")
            if not self.keys.accepts(authorization):
                return unauthorized("Incorrect API key provided")
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            return too_large(self.max_bytes)
        if self.in_flight >= self.max_in_flight:
            return busy(self.max_in_flight)
        return None

    def _bounded(self, receive: Receive) -> Receive:
        """``receive`` that refuses a body (chunked, or lying about its length) past the limit."""
        seen = 0

        async def bounded() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise too_large(self.max_bytes)
            return message

        return bounded
