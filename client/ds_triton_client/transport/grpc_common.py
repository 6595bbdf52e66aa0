"""The gRPC codec both gRPC transports share: operations to KServe v2 messages and back.

The transports call Triton's ``GRPCInferenceService`` stub directly (the protobuf
classes tritonclient ships) over their own channels, so one channel carries any
number of concurrent calls and streams, TLS and metadata are set once per
endpoint, and a generation opens a stream, not a channel.
"""

from __future__ import annotations

import contextlib
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
from ds_triton_client.inflight import Abort
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
    "model_metadata": "ModelMetadata",
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


#: Calls in flight on every open channel before another one opens (HTTP/2 servers
#: commonly allow 100 concurrent streams per connection).
CALLS_PER_CHANNEL = 100


class ChannelPool:
    """At most ``options.pool_size`` channels to one endpoint, opened as load needs them.

    Like an HTTP pool opens connections on demand: a call leases the channel with the
    fewest calls in flight, and a new channel opens only when every open one already
    carries ``CALLS_PER_CHANNEL``. Channels are kept, and opened lazily because an aio
    channel must be made inside its event loop.

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
        self._channels: list[Any] = []
        self._stubs: list[service_pb2_grpc.GRPCInferenceServiceStub] = []
        self._busy: list[int] = []
        self.metadata = options.grpc_metadata()

    @property
    def size(self) -> int:
        """Channels open now."""
        return len(self._channels)

    @contextlib.contextmanager
    def lease(self) -> Iterator[service_pb2_grpc.GRPCInferenceServiceStub]:
        """The stub of the least busy channel, counted busy until the block ends."""
        with self._lock:
            index = min(range(len(self._busy)), key=self._busy.__getitem__, default=-1)
            if index < 0 or (self._busy[index] >= CALLS_PER_CHANNEL and len(self._busy) < self._size):
                index = self._open()
            self._busy[index] += 1
            stub = self._stubs[index]
        try:
            yield stub
        finally:
            with self._lock:
                if index < len(self._busy):
                    self._busy[index] -= 1

    def _open(self) -> int:
        if self._credentials is not None:
            channel = self._flavour.secure_channel(self._address, self._credentials, CHANNEL_OPTIONS)
        else:
            channel = self._flavour.insecure_channel(self._address, CHANNEL_OPTIONS)
        self._channels.append(channel)
        self._stubs.append(service_pb2_grpc.GRPCInferenceServiceStub(channel))
        self._busy.append(0)
        return len(self._channels) - 1

    def take_all(self) -> list[Any]:
        """Forget every channel and return them, for the transport to close."""
        with self._lock:
            channels, self._channels, self._stubs, self._busy = self._channels, [], [], []
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

    @contextlib.contextmanager
    def _unary(self, op: Op[Any], timeout: float) -> Iterator[Any]:
        """The unary call of ``op`` on a leased channel (sync: its answer; aio: an awaitable),
        with every failure raised as a typed ``ClientError``."""
        self._guard(timeout)
        method, message = encode(op)
        with self._typed_errors(), self._pool.lease() as stub:
            yield getattr(stub, method)(message, timeout=timeout, metadata=self._pool.metadata)

    @contextlib.contextmanager
    def _stream(self, requests: Any, finished: Any, timeout: float, abort: Abort | None) -> Iterator[Any]:
        """A new ``ModelStreamInfer`` stream on a leased channel, fed by ``requests``.

        Failures while reading it are typed; when reading stops the request side ends
        (``finished``) and the stream is cancelled, so a consumer that stops early does
        not leave the model generating.
        """
        self._guard(timeout)
        with self._pool.lease() as stub:
            responses = stub.ModelStreamInfer(requests, timeout=timeout, metadata=self._pool.metadata)
            if abort is not None:
                abort.bind(responses.cancel)
            try:
                with self._typed_errors():
                    yield responses
            finally:
                finished.set()
                responses.cancel()

    @contextlib.contextmanager
    def _typed_errors(self) -> Iterator[None]:
        try:
            yield
        except ClientError:
            raise
        except Exception as exc:
            raise map_error(exc, self.endpoint.url) from exc

    def _answer(self, response: Any, finished: Any) -> Outputs:
        """The outputs of one stream response. The last one sets ``finished`` (an Event),
        which ends the request side, so the server completes the stream."""
        outputs, final = stream_answer(response, self.endpoint.url)
        if final:
            finished.set()
        return outputs


def encode(op: Op[Any]) -> tuple[str, Any]:
    """The stub method and request message of ``op``."""
    messages = {
        "server_ready": lambda: service_pb2.ServerReadyRequest(),
        "model_ready": lambda: service_pb2.ModelReadyRequest(name=op.model),
        "model_config": lambda: service_pb2.ModelConfigRequest(name=op.model),
        "model_metadata": lambda: service_pb2.ModelMetadataRequest(name=op.model),
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
