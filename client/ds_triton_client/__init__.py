"""Typed sync/async client for DeepSpeed models served by Triton, with failover across replicas.

from ds_triton_client import Client
with Client("http://127.0.0.1:8000") as client:
    vectors = client.embed(["hello", "world"])   # float32 (2, 384)
"""

from ds_triton_client._version import __version__
from ds_triton_client.aclient import AsyncClient
from ds_triton_client.client import Client
from ds_triton_client.codec import Candidate, GenerationPiece, GenerationResult, TokenLogprob
from ds_triton_client.endpoints import Endpoint, parse_endpoints
from ds_triton_client.errors import (
    ClientClosedError,
    ClientError,
    DeadlineExceededError,
    InvalidInputError,
    ModelNotReadyError,
    NoHealthyEndpointError,
    OverloadedError,
    PermissionDeniedError,
    ServerConnectionError,
    ServerError,
    StreamInterruptedError,
)
from ds_triton_client.options import ClientOptions

__all__ = [
    "AsyncClient",
    "Candidate",
    "Client",
    "ClientClosedError",
    "ClientError",
    "ClientOptions",
    "DeadlineExceededError",
    "Endpoint",
    "GenerationPiece",
    "GenerationResult",
    "InvalidInputError",
    "ModelNotReadyError",
    "NoHealthyEndpointError",
    "OverloadedError",
    "PermissionDeniedError",
    "ServerConnectionError",
    "ServerError",
    "StreamInterruptedError",
    "TokenLogprob",
    "__version__",
    "parse_endpoints",
]
