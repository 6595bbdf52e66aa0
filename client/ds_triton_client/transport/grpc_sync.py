"""Blocking gRPC transport over tritonclient.grpc.

Unary calls share one channel (gRPC multiplexes them and is thread-safe).
tritonclient allows one bidirectional stream per client object, so every
generation opens its own short-lived client and closes it when the request's
final response arrives.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Generator, Mapping, Sequence
from typing import Any

import tritonclient.grpc as grpcclient

from ds_triton_client.codec import Tensor, fields_to_tensors
from ds_triton_client.endpoints import Endpoint
from ds_triton_client.errors import ClientError, DeadlineExceededError, map_error
from ds_triton_client.options import ClientOptions
from ds_triton_client.transport.base import Fields, Outputs
from ds_triton_client.transport.grpc_common import (
    FINAL_FLAG_PARAMETERS,
    as_dict,
    grpc_inputs,
    grpc_outputs,
    is_final,
    result_arrays,
)


class GrpcSyncTransport:
    """One endpoint over gRPC."""

    def __init__(self, endpoint: Endpoint, options: ClientOptions) -> None:
        self.endpoint = endpoint
        self._client = grpcclient.InferenceServerClient(endpoint.address)

    def _guard(self, timeout: float) -> None:
        if timeout <= 0:
            raise DeadlineExceededError("deadline passed before the request was sent", self.endpoint.url)

    def server_ready(self, timeout: float) -> bool:
        try:
            return bool(self._client.is_server_ready(client_timeout=timeout))
        except Exception:
            return False

    def model_ready(self, model: str, timeout: float) -> bool:
        try:
            return bool(self._client.is_model_ready(model, client_timeout=timeout))
        except Exception:
            return False

    def model_config(self, model: str, timeout: float) -> dict[str, Any]:
        self._guard(timeout)
        try:
            answer = self._client.get_model_config(model, client_timeout=timeout)
        except Exception as exc:
            raise map_error(exc, self.endpoint.url) from exc
        return dict(as_dict(answer.config))

    def models(self, timeout: float) -> list[dict[str, Any]]:
        self._guard(timeout)
        try:
            answer = self._client.get_model_repository_index(client_timeout=timeout)
        except Exception as exc:
            raise map_error(exc, self.endpoint.url) from exc
        return list(as_dict(answer).get("models", []))

    def stats(self, model: str, timeout: float) -> dict[str, Any]:
        self._guard(timeout)
        try:
            answer = self._client.get_inference_statistics(model, client_timeout=timeout)
        except Exception as exc:
            raise map_error(exc, self.endpoint.url) from exc
        return as_dict(answer)

    def infer(self, model: str, inputs: Sequence[Tensor], outputs: Sequence[str], timeout: float) -> Outputs:
        self._guard(timeout)
        try:
            result = self._client.infer(
                model, grpc_inputs(inputs), outputs=grpc_outputs(outputs), client_timeout=timeout
            )
        except Exception as exc:
            raise map_error(exc, self.endpoint.url) from exc
        return result_arrays(result, outputs)

    def generate(
        self, model: str, fields: Fields, batched: bool, timeout: float
    ) -> Generator[Mapping[str, Any], None, None]:
        """Send one request on a fresh stream and yield each response until the final one."""
        self._guard(timeout)
        deadline = time.monotonic() + timeout
        answers: queue.Queue[tuple[Any, Any]] = queue.Queue()
        client = grpcclient.InferenceServerClient(self.endpoint.address)
        try:
            client.start_stream(
                callback=lambda result, error: answers.put((result, error)), stream_timeout=timeout
            )
            client.async_stream_infer(
                model, grpc_inputs(fields_to_tensors(fields, batched)), parameters=FINAL_FLAG_PARAMETERS
            )
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise DeadlineExceededError(
                        f"stream not finished within {timeout:.3g}s", self.endpoint.url
                    )
                try:
                    result, error = answers.get(timeout=left)
                except queue.Empty:
                    continue
                if error is not None:
                    raise map_error(error, self.endpoint.url)
                outputs = result_arrays(result)
                if outputs:
                    yield outputs
                if is_final(result):
                    return
        except ClientError:
            raise
        except Exception as exc:
            raise map_error(exc, self.endpoint.url) from exc
        finally:
            # cancel_requests: a consumer that stops early must not leave the model generating.
            client.stop_stream(cancel_requests=True)
            client.close()

    def close(self) -> None:
        self._client.close()
