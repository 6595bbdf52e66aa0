"""Blocking HTTP transport: tritonclient's body codec over a bounded urllib3 pool.

tritonclient.http's own client rides on gevent, which cannot be shared between
threads and has one network timeout per client; the sync client runs chunks on
worker threads with a per-call deadline, so it sends tritonclient-encoded bodies
through a thread-safe urllib3 pool instead.
"""

from __future__ import annotations

import json
import time
from collections.abc import Generator, Mapping, Sequence
from typing import Any

import urllib3

from ds_triton_client.codec import Tensor
from ds_triton_client.endpoints import Endpoint
from ds_triton_client.errors import ClientError, DeadlineExceededError, map_error
from ds_triton_client.options import ClientOptions
from ds_triton_client.sse import SSEParser
from ds_triton_client.transport.base import (
    HEADER_LENGTH,
    Fields,
    Outputs,
    decode_infer_body,
    encode_infer_body,
    generate_body,
    http_error,
    infer_path,
    sse_payload,
)


class HttpSyncTransport:
    """One endpoint over HTTP; at most ``options.pool_size`` connections, callers wait for one."""

    def __init__(self, endpoint: Endpoint, options: ClientOptions) -> None:
        self.endpoint = endpoint
        self._pool = urllib3.HTTPConnectionPool(
            endpoint.host,
            endpoint.port,
            maxsize=options.pool_size,
            block=True,
            retries=False,  # retries are the client's decision, across endpoints
        )

    def _request(
        self,
        method: str,
        path: str,
        timeout: float,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        stream: bool = False,
    ) -> urllib3.BaseHTTPResponse:
        if timeout <= 0:
            raise DeadlineExceededError("deadline passed before the request was sent", self.endpoint.url)
        try:
            response = self._pool.request(
                method,
                path,
                body=body,
                headers=dict(headers or {}),
                timeout=urllib3.Timeout(connect=timeout, read=timeout),
                pool_timeout=timeout,
                preload_content=not stream,
                redirect=False,
            )
        except Exception as exc:
            raise map_error(exc, self.endpoint.url) from exc
        if response.status != 200:
            data = response.read() if stream else response.data
            response.release_conn()
            raise http_error(response.status, data, self.endpoint.url)
        return response

    def _json(self, method: str, path: str, timeout: float, body: bytes | None = None) -> Any:
        response = self._request(method, path, timeout, body=body)
        return json.loads(response.data) if response.data else {}

    def _ok(self, path: str, timeout: float) -> bool:
        try:
            self._request("GET", path, timeout)
        except Exception:
            return False
        return True

    def server_ready(self, timeout: float) -> bool:
        return self._ok("/v2/health/ready", timeout)

    def model_ready(self, model: str, timeout: float) -> bool:
        return self._ok(f"/v2/models/{model}/ready", timeout)

    def model_config(self, model: str, timeout: float) -> dict[str, Any]:
        return dict(self._json("GET", f"/v2/models/{model}/config", timeout))

    def models(self, timeout: float) -> list[dict[str, Any]]:
        return list(self._json("POST", "/v2/repository/index", timeout, body=b"{}"))

    def stats(self, model: str, timeout: float) -> dict[str, Any]:
        return dict(self._json("GET", f"/v2/models/{model}/stats", timeout))

    def infer(self, model: str, inputs: Sequence[Tensor], outputs: Sequence[str], timeout: float) -> Outputs:
        body, headers = encode_infer_body(inputs, outputs)
        response = self._request("POST", infer_path(model), timeout, body=body, headers=headers)
        return decode_infer_body(response.data, response.headers.get(HEADER_LENGTH), outputs)

    def generate(
        self, model: str, fields: Fields, batched: bool, timeout: float
    ) -> Generator[Mapping[str, Any], None, None]:
        """``/generate`` (one answer) or ``/generate_stream`` (SSE) when ``fields['stream']``."""
        del batched  # the generate extension shapes inputs itself
        if not fields.get("stream"):
            yield dict(
                self._json("POST", f"/v2/models/{model}/generate", timeout, body=generate_body(fields))
            )
            return
        response = self._request(
            "POST",
            f"/v2/models/{model}/generate_stream",
            timeout,
            body=generate_body(fields),
            headers={"Content-Type": "application/json", "Accept": "text/event-stream"},
            stream=True,
        )
        parser = SSEParser()
        # The read timeout bounds each read; this bounds the whole stream.
        deadline = time.monotonic() + timeout
        try:
            for chunk in response.stream(8192, decode_content=True):
                if time.monotonic() > deadline:
                    raise DeadlineExceededError(
                        f"stream not finished within {timeout:.3g}s", self.endpoint.url
                    )
                for data in parser.feed(chunk):
                    yield sse_payload(data, self.endpoint.url)
            for data in parser.close():
                yield sse_payload(data, self.endpoint.url)
        except ClientError:
            raise
        except Exception as exc:
            raise map_error(exc, self.endpoint.url) from exc
        finally:
            # A stream closed early must not return a half-read connection to the pool.
            response.close()
            response.release_conn()

    def close(self) -> None:
        self._pool.close()
