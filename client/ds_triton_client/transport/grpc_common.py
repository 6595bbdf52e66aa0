"""The gRPC codec both gRPC transports share: operations to KServe v2 messages and back.

The transports call Triton's ``GRPCInferenceService`` stub directly (the protobuf
classes tritonclient ships) over their own channels, so one channel carries any
number of concurrent calls and streams, TLS and metadata are set once per
endpoint, and a generation opens a stream, not a channel.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import Iterator, Sequence
from types import ModuleType
from typing import Any

import grpc
from tritonclient.grpc import InferResult, service_pb2, service_pb2_grpc
from tritonclient.utils import serialize_byte_tensor

from ds_triton_client.codec import Tensor, fields_to_tensors
from ds_triton_client.endpoints import Endpoint
from ds_triton_client.errors import ClientError, DeadlineExceededError, error_from_status, map_error
from ds_triton_client.options import ClientOptions
from ds_triton_client.transport.base import GenerationCall, Op, Outputs, output_arrays

#: Each channel its own connection (gRPC would otherwise share one subchannel between
#: channels with equal arguments), and no message size limit below Triton's own.
CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.use_local_subchannel_pool", 1),
    ("grpc.max_send_message_length", -1),
    ("grpc.max_receive_message_length", -1),
)

_METHODS: dict[str, str] = {
    "server_ready": "ServerReady",
    "model_ready": "ModelReady",
    "model_config": "ModelConfig",
    "models": "RepositoryIndex",
    "stats": "ModelStatistics",
    "infer": "ModelInfer",
}


def credentials(endpoint: Endpoint, options: ClientOptions) -> grpc.ChannelCredentials | None:
    """TLS credentials for a ``grpcs://`` endpoint (None: plaintext).

    Raises:
        ValueError: A certificate or key file cannot be read.
    """
    if not endpoint.tls:
        return None
    try:
        root, chain, key = (_read(path) for path in (options.ca_file, options.cert_file, options.key_file))
    except OSError as exc:
        raise ValueError(f"TLS files: {exc}") from exc
    return grpc.ssl_channel_credentials(root_certificates=root, private_key=key, certificate_chain=chain)


class ChannelPool:
    """Up to ``options.pool_size`` channels to one endpoint, handed out round-robin.

    Channels are opened on demand (an aio channel must be made inside its event
    loop) and kept: calls and generation streams multiplex over them.

    Args:
        endpoint: Where the channels go.
        options: ``pool_size``, TLS files and headers.
        flavour: ``grpc`` (blocking) or ``grpc.aio``.
    """

    def __init__(self, endpoint: Endpoint, options: ClientOptions, flavour: ModuleType) -> None:
        self._address = endpoint.address
        self._credentials = credentials(endpoint, options)
        self._flavour = flavour
        self._size = options.pool_size
        self._lock = threading.Lock()
        self._turn = itertools.count()
        self.channels: list[Any] = []
        self._stubs: list[service_pb2_grpc.GRPCInferenceServiceStub] = []
        self.metadata = metadata(options)

    def stub(self) -> service_pb2_grpc.GRPCInferenceServiceStub:
        """The service stub of the next channel."""
        with self._lock:
            if len(self._stubs) < self._size:
                channel = (
                    self._flavour.secure_channel(self._address, self._credentials, CHANNEL_OPTIONS)
                    if self._credentials is not None
                    else self._flavour.insecure_channel(self._address, CHANNEL_OPTIONS)
                )
                self.channels.append(channel)
                self._stubs.append(service_pb2_grpc.GRPCInferenceServiceStub(channel))
                return self._stubs[-1]
            return self._stubs[next(self._turn) % self._size]

    def take_all(self) -> list[Any]:
        """Forget every channel and return them, for the transport to close."""
        with self._lock:
            channels, self.channels, self._stubs = self.channels, [], []
        return channels


class GrpcTransportBase:
    """What both gRPC transports share: the endpoint, its channels, and starting calls and streams.

    The sync flavour's stub methods block and return the answer; the aio flavour's
    return awaitables. Either way only the waiting is left to the transport.
    """

    def __init__(self, endpoint: Endpoint, options: ClientOptions, flavour: ModuleType) -> None:
        self.endpoint = endpoint
        self._pool = ChannelPool(endpoint, options, flavour)

    def _guard(self, timeout: float) -> None:
        if timeout <= 0:
            raise DeadlineExceededError("deadline passed before the request was sent", self.endpoint.url)

    def _start_call(self, op: Op[Any], timeout: float) -> Any:
        """The unary call of ``op`` (sync: its answer; aio: an awaitable of it)."""
        self._guard(timeout)
        method, message = encode(op)
        return getattr(self._pool.stub(), method)(message, timeout=timeout, metadata=self._pool.metadata)

    def _start_stream(self, requests: Any, timeout: float) -> Any:
        """A new ``ModelStreamInfer`` stream on a pooled channel, fed by ``requests``."""
        return self._pool.stub().ModelStreamInfer(requests, timeout=timeout, metadata=self._pool.metadata)

    @contextlib.contextmanager
    def _typed_errors(self) -> Iterator[None]:
        """Raise every failure inside as a typed ``ClientError`` of this endpoint."""
        try:
            yield
        except ClientError:
            raise
        except Exception as exc:
            raise map_error(exc, self.endpoint.url) from exc

    @contextlib.contextmanager
    def _streaming(self, responses: Any, finished: Any) -> Iterator[None]:
        """Typed errors while reading a stream, and the stream cancelled when reading stops
        (a consumer that stops early must not leave the model generating)."""
        try:
            with self._typed_errors():
                yield
        finally:
            finished.set()
            responses.cancel()

    def _answer(self, response: Any, finished: Any) -> Outputs:
        """The outputs of one stream response. The last one sets ``finished`` (an Event),
        which ends the request side, so the server completes the stream."""
        outputs, final = stream_answer(response, self.endpoint.url)
        if final:
            finished.set()
        return outputs


def metadata(options: ClientOptions) -> tuple[tuple[str, str], ...]:
    """The extra headers as gRPC metadata (whose keys are lower case)."""
    return tuple((name.lower(), value) for name, value in options.headers.items())


def encode(op: Op[Any]) -> tuple[str, Any]:
    """The stub method and request message of ``op``."""
    messages = {
        "server_ready": lambda: service_pb2.ServerReadyRequest(),
        "model_ready": lambda: service_pb2.ModelReadyRequest(name=op.model),
        "model_config": lambda: service_pb2.ModelConfigRequest(name=op.model),
        "models": lambda: service_pb2.RepositoryIndexRequest(),
        "stats": lambda: service_pb2.ModelStatisticsRequest(name=op.model),
        "infer": lambda: infer_request(op.model, op.inputs, op.outputs),
    }
    return _METHODS[op.kind], messages[op.kind]()


def decode(op: Op[Any], response: Any) -> Any:
    """The result of ``op``, in the same shape the HTTP codec gives."""
    if op.kind in ("server_ready", "model_ready"):
        return bool(response.ready)
    if op.kind == "infer":
        return result_arrays(InferResult(response), op.outputs)
    if op.kind == "model_config":
        return as_dict(response.config)
    answer = as_dict(response)
    return list(answer.get("models", [])) if op.kind == "models" else answer


def infer_request(
    model: str, tensors: Sequence[Tensor], outputs: Sequence[str] = (), final_flag: bool = False
) -> service_pb2.ModelInferRequest:
    """A ``ModelInferRequest`` with the tensors' contents as raw bytes.

    Args:
        final_flag: Ask Triton to flag the last response of a decoupled request
            (possibly an empty one), so a stream that serves one request knows it is complete.
    """
    request = service_pb2.ModelInferRequest(model_name=model)
    for tensor in tensors:
        request.inputs.add(name=tensor.name, datatype=tensor.datatype, shape=list(tensor.data.shape))
        if tensor.datatype == "BYTES":
            request.raw_input_contents.append(serialize_byte_tensor(tensor.data).item())
        else:
            request.raw_input_contents.append(tensor.data.tobytes())
    for name in outputs:
        request.outputs.add(name=name)
    if final_flag:
        request.parameters["triton_enable_empty_final_response"].bool_param = True
    return request


def generation_request(call: GenerationCall) -> service_pb2.ModelInferRequest:
    return infer_request(call.model, fields_to_tensors(call.fields, call.batched), final_flag=True)


def stream_answer(response: Any, endpoint: str) -> tuple[Outputs, bool]:
    """One ``ModelStreamInferResponse``: its output arrays and whether it is the last.

    Raises:
        ClientError: The response carries the model's error (typed by its message:
            stream errors have no status code).
    """
    if response.error_message:
        raise error_from_status(None, response.error_message, endpoint)
    result = InferResult(response.infer_response)
    parameters = response.infer_response.parameters
    final = "triton_final_response" in parameters and bool(parameters["triton_final_response"].bool_param)
    return result_arrays(result), final


def result_arrays(result: Any, names: Sequence[str] | None = None) -> Outputs:
    """Output arrays of a gRPC ``InferResult`` (all outputs when ``names`` is None)."""
    wanted = names if names is not None else [output.name for output in result.get_response().outputs]
    return output_arrays(result, wanted)


def as_dict(message: Any) -> dict[str, Any]:
    """A protobuf answer as the same JSON shape the HTTP API returns."""
    from google.protobuf.json_format import MessageToDict

    return dict(MessageToDict(message, preserving_proto_field_name=True))


def _read(path: str | None) -> bytes | None:
    if path is None:
        return None
    with open(path, "rb") as handle:
        return handle.read()
