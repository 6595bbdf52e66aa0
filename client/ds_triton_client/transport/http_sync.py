"""Blocking HTTP(S) transport: the shared HTTP codec over a bounded urllib3 pool.

tritonclient.http's own client rides on gevent, which cannot be shared between
threads and has one network timeout per client; the sync client runs chunks on
worker threads with a per-call deadline, so it sends tritonclient-encoded bodies
through a thread-safe urllib3 pool instead.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Mapping
from typing import Any, TypeVar, cast

import urllib3

from ds_triton_client import errors
from ds_triton_client.endpoints import Endpoint
from ds_triton_client.inflight import Abort
from ds_triton_client.options import ClientOptions
from ds_triton_client.sse import SSEParser
from ds_triton_client.transport import http_common as http
from ds_triton_client.transport.base import GenerationCall, Op

T = TypeVar("T")


class HttpSyncTransport(http.HttpTransportBase):
    """One endpoint; at most ``options.pool_size`` connections, callers wait for one."""

    def __init__(self, endpoint: Endpoint, options: ClientOptions) -> None:
        super().__init__(endpoint, options)
        # retries=False: retrying is the client's decision, across endpoints.
        pool: dict[str, Any] = {"maxsize": options.pool_size, "block": True, "retries": False}
        if self._ssl is not None:
            pool["ssl_context"] = self._ssl
        pool_class = urllib3.HTTPSConnectionPool if endpoint.tls else urllib3.HTTPConnectionPool
        self._pool = pool_class(endpoint.host, endpoint.port, **pool)

    def _send(
        self, request: http.HttpRequest, timeout: float, stream: bool = False
    ) -> urllib3.BaseHTTPResponse:
        self._guard(timeout)
        try:
            response = self._pool.request(
                request.method,
                request.path,
                body=request.body,
                headers=dict(request.headers),
                timeout=urllib3.Timeout(connect=timeout, read=timeout),
                pool_timeout=timeout,
                preload_content=not stream,
                redirect=False,
            )
        except Exception as exc:
            raise errors.map_error(exc, self.endpoint.url) from exc
        if response.status != 200:
            data = response.read() if stream else response.data
            response.release_conn()
            raise http.http_error(response.status, data, self.endpoint.url)
        return response

    def call(self, op: Op[T], timeout: float) -> T:
        response = self._send(http.encode(op, self._options), timeout)
        return cast(T, http.decode(op, response.data, response.headers))

    def generate(
        self, call: GenerationCall, timeout: float, abort: Abort | None = None
    ) -> Generator[Mapping[str, Any], None, None]:
        """The one JSON answer of ``/generate``, or each event of ``/generate_stream``.

        Both bodies are read as streams, so ``abort`` can shut the socket under a waiting read.
        """
        response = self._send(http.generate_request(call, self._options), timeout, stream=True)
        if abort is not None:
            abort.bind(response.shutdown)
        if not call.stream:
            try:
                yield http.generate_answer(response.read())
            except errors.ClientError:
                raise
            except Exception as exc:
                raise errors.map_error(exc, self.endpoint.url) from exc
            finally:
                response.release_conn()
            return
        parser = SSEParser()
        # The read timeout bounds each read; this bounds the whole stream.
        deadline = time.monotonic() + timeout
        try:
            for chunk in response.stream(8192, decode_content=True):
                if time.monotonic() > deadline:
                    raise errors.DeadlineExceededError(
                        f"stream not finished within {timeout:.3g}s", self.endpoint.url
                    )
                yield from self._events(parser, chunk)
            yield from self._events(parser, None)
        except errors.ClientError:
            raise
        except Exception as exc:
            raise errors.map_error(exc, self.endpoint.url) from exc
        finally:
            # A stream closed early must not return a half-read connection to the pool.
            response.close()
            response.release_conn()

    def close(self) -> None:
        self._pool.close()
