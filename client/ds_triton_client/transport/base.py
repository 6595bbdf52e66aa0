"""The transport contract: protocol-neutral operations in, their answers out.

A transport does I/O only. Each protocol's codec (``http_common``, ``grpc_common``)
turns an ``Op`` into that protocol's request and its answer back into the result,
and is shared by the protocol's sync and async transports.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncGenerator, Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, Protocol, TypeVar

import numpy as np

from ds_triton_client.codec import Tensor
from ds_triton_client.endpoints import Endpoint
from ds_triton_client.inflight import Abort
from ds_triton_client.options import ClientOptions

T = TypeVar("T")
Outputs = dict[str, np.ndarray]
Kind = Literal["server_ready", "model_ready", "model_config", "model_metadata", "models", "stats", "infer"]


@dataclass(frozen=True)
class Op(Generic[T]):
    """One request-response operation of Triton's KServe v2 API; ``T`` is its result."""

    kind: Kind
    model: str = ""
    inputs: tuple[Tensor, ...] = ()
    outputs: tuple[str, ...] = ()


def server_ready() -> Op[bool]:
    return Op("server_ready")


def model_ready(model: str) -> Op[bool]:
    return Op("model_ready", model)


def model_config(model: str) -> Op[dict[str, Any]]:
    """The model's config as HTTP's JSON shape (gRPC answers are converted to it)."""
    return Op("model_config", model)


def model_metadata(model: str) -> Op[dict[str, Any]]:
    """Inputs and outputs with their shapes (open even where the config API is restricted)."""
    return Op("model_metadata", model)


def repository_index() -> Op[list[dict[str, Any]]]:
    return Op("models")


def statistics(model: str) -> Op[dict[str, Any]]:
    return Op("stats", model)


def infer(model: str, inputs: Sequence[Tensor], outputs: Sequence[str]) -> Op[Outputs]:
    return Op("infer", model, tuple(inputs), tuple(outputs))


@dataclass(frozen=True)
class GenerationCall:
    """One generation request: the model, its named inputs, and whether the model batches."""

    model: str
    fields: Mapping[str, str | bool]
    batched: bool

    @property
    def stream(self) -> bool:
        return bool(self.fields.get("stream"))


class SyncTransport(Protocol):
    """Blocking I/O to one endpoint; ``timeout`` is the time left of the caller's deadline.

    Every failure is raised as a typed ``ClientError``.
    """

    endpoint: Endpoint

    def call(self, op: Op[T], timeout: float) -> T: ...
    def generate(
        self, call: GenerationCall, timeout: float, abort: Abort | None = None
    ) -> Generator[Mapping[str, Any], None, None]:
        """Yield the generation's responses; ``abort`` gets how to end it from another thread."""
        ...

    def close(self) -> None: ...


class AsyncTransport(Protocol):
    """The asyncio twin of ``SyncTransport``."""

    endpoint: Endpoint

    async def call(self, op: Op[T], timeout: float) -> T: ...
    def generate(
        self, call: GenerationCall, timeout: float, abort: Abort | None = None
    ) -> AsyncGenerator[Mapping[str, Any], None]: ...
    async def close(self) -> None: ...


def output_arrays(result: Any, names: Sequence[str]) -> Outputs:
    """The named outputs of a tritonclient (HTTP or gRPC) ``InferResult`` that it has."""
    arrays: Outputs = {}
    for name in names:
        array = result.as_numpy(name)
        if array is not None:
            arrays[name] = array
    return arrays


def ssl_context(options: ClientOptions) -> ssl.SSLContext:
    """Verifying TLS context for ``https://`` endpoints: ``ca_file`` (else the system's CAs),
    plus the client certificate for mutual TLS.

    Raises:
        ValueError: A certificate or key file cannot be read.
    """
    try:
        context = ssl.create_default_context(cafile=options.ca_file)
        if options.cert_file:
            context.load_cert_chain(options.cert_file, options.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"TLS files: {exc}") from exc
    return context
