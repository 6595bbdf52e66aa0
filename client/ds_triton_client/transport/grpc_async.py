"""asyncio gRPC transport over tritonclient.grpc.aio (unary calls and ``stream_infer``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from typing import Any

import tritonclient.grpc.aio as aiogrpc

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


class GrpcAsyncTransport:
    """One endpoint over gRPC; the aio channel is created on first use inside the loop."""

    def __init__(self, endpoint: Endpoint, options: ClientOptions) -> None:
        self.endpoint = endpoint
        self._client_obj: aiogrpc.InferenceServerClient | None = None

    def _client(self) -> aiogrpc.InferenceServerClient:
        if self._client_obj is None:
            self._client_obj = aiogrpc.InferenceServerClient(self.endpoint.address)
        return self._client_obj

    def _guard(self, timeout: float) -> None:
        if timeout <= 0:
            raise DeadlineExceededError("deadline passed before the request was sent", self.endpoint.url)

    async def server_ready(self, timeout: float) -> bool:
        try:
            return bool(await self._client().is_server_ready(client_timeout=timeout))
        except Exception:
            return False

    async def model_ready(self, model: str, timeout: float) -> bool:
        try:
            return bool(await self._client().is_model_ready(model, client_timeout=timeout))
        except Exception:
            return False

    async def model_config(self, model: str, timeout: float) -> dict[str, Any]:
        self._guard(timeout)
        try:
            answer = await self._client().get_model_config(model, client_timeout=timeout)
        except Exception as exc:
            raise map_error(exc, self.endpoint.url) from exc
        return dict(as_dict(answer.config))

    async def models(self, timeout: float) -> list[dict[str, Any]]:
        self._guard(timeout)
        try:
            answer = await self._client().get_model_repository_index(client_timeout=timeout)
        except Exception as exc:
            raise map_error(exc, self.endpoint.url) from exc
        return list(as_dict(answer).get("models", []))

    async def stats(self, model: str, timeout: float) -> dict[str, Any]:
        self._guard(timeout)
        try:
            answer = await self._client().get_inference_statistics(model, client_timeout=timeout)
        except Exception as exc:
            raise map_error(exc, self.endpoint.url) from exc
        return as_dict(answer)

    async def infer(
        self, model: str, inputs: Sequence[Tensor], outputs: Sequence[str], timeout: float
    ) -> Outputs:
        self._guard(timeout)
        try:
            result = await self._client().infer(
                model, grpc_inputs(inputs), outputs=grpc_outputs(outputs), client_timeout=timeout
            )
        except Exception as exc:
            raise map_error(exc, self.endpoint.url) from exc
        return result_arrays(result, outputs)

    async def generate(
        self, model: str, fields: Fields, batched: bool, timeout: float
    ) -> AsyncGenerator[Mapping[str, Any], None]:
        """Send one request on a new bidirectional stream; yield responses until the final one."""
        self._guard(timeout)
        request = {
            "model_name": model,
            "inputs": grpc_inputs(fields_to_tensors(fields, batched)),
            "parameters": dict(FINAL_FLAG_PARAMETERS),
        }
        finished = asyncio.Event()

        async def requests() -> AsyncIterator[dict[str, Any]]:
            yield request
            # Keep the request side open until the answer is complete: half-closing
            # early lets some servers end the stream before the last response.
            await finished.wait()

        responses = self._client().stream_infer(requests(), stream_timeout=timeout)
        try:
            async for result, error in responses:
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
            finished.set()
            responses.cancel()

    async def close(self) -> None:
        if self._client_obj is not None:
            await self._client_obj.close()
            self._client_obj = None
