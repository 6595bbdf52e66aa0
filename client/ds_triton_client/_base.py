"""What the sync and async clients share: settings, balancer, requests built and results decoded.

Like httpx's ``BaseClient``: everything that does not wait on I/O lives here (which
request to send, how to read its answer, which endpoint to try and what to raise),
so ``Client`` and ``AsyncClient`` differ only in how they wait.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from ds_triton_client.balancer import Balancer
from ds_triton_client.codec import (
    EMBED_OUTPUT,
    GenerationResult,
    chunk_bounds,
    combine_pieces,
    embedding_inputs,
    embedding_output,
    generation_fields,
    generation_piece,
    normalize_stats,
)
from ds_triton_client.endpoints import Endpoint, parse_endpoints
from ds_triton_client.errors import ClientClosedError, ClientError, InvalidInputError, ModelNotReadyError
from ds_triton_client.failover import Failover
from ds_triton_client.health import Probe
from ds_triton_client.inflight import InFlight, InFlightRegistry
from ds_triton_client.model_info import ModelInfo
from ds_triton_client.options import ClientOptions, Protocol
from ds_triton_client.retry import Deadline, RetryPolicy
from ds_triton_client.transport.base import GenerationCall, Op, Outputs, infer

DEFAULT_EMBED_MODEL = "text_embedding"
DEFAULT_GENERATE_MODEL = "text_generation"


class BaseClient:
    """Shared state of a client over one or more Triton endpoints.

    Args:
        urls: One URL, a comma-separated list or a sequence (``http://h:p``, ``grpc://h:p``,
            ``https://h:p``, ``grpcs://h:p``).
        options: Settings; keyword overrides below replace single fields.
        protocol: Scheme for URLs written without one.
        models: Models the active health checks also probe (used ones are added).
        **overrides: Any ``ClientOptions`` field, e.g. ``timeout=5``.
    """

    def __init__(
        self,
        urls: str | Sequence[str],
        *,
        options: ClientOptions | None = None,
        protocol: Protocol | None = None,
        models: Iterable[str] = (),
        **overrides: Any,
    ) -> None:
        base = options or ClientOptions()
        if protocol is not None:
            overrides["protocol"] = protocol
        self.options = dataclasses.replace(base, **overrides) if overrides else base
        self.endpoints: list[Endpoint] = parse_endpoints(
            urls if isinstance(urls, str) else list(urls), self.options.protocol
        )
        if any(self.options.tls_files) and not any(e.tls for e in self.endpoints):
            # Certificates for a plaintext URL are a mistake that would send secrets in clear.
            raise ValueError("TLS files are set but no endpoint is https:// or grpcs://")
        self._balancer = Balancer(self.endpoints, self.options.max_fails, self.options.fail_timeout)
        self._retry = RetryPolicy(
            self.options.max_attempts, self.options.backoff_base, self.options.backoff_max
        )
        self._watched: set[str] = set(models)
        self._model_info: dict[str, ModelInfo] = {}
        self._closed = False
        # Calls on a model that vanished from an endpoint (a dead generation stub) are
        # ended once silent for ``stranded_after``: see inflight.py.
        self._inflight = InFlightRegistry(silence=self.options.stranded_after)
        self._transports = {e: self._make_transport(e, self.options) for e in self.endpoints}
        self._setup()

    def _make_transport(self, endpoint: Endpoint, options: ClientOptions) -> Any:
        """The sync or async transport of one endpoint (each client chooses its kind)."""
        raise NotImplementedError

    def _setup(self) -> None:
        """Create what the sync or async client waits with (threads, pools, tasks)."""
        raise NotImplementedError

    @property
    def balancer(self) -> Balancer:
        """The endpoint balancer (read its ``snapshot()`` to see ejections)."""
        return self._balancer

    @property
    def watched_models(self) -> frozenset[str]:
        return frozenset(self._watched)

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise ClientClosedError("the client is closed; create a new one")

    # --- one call: its deadline and its walk over the endpoints --------------------------

    def _deadline(self, timeout: float | None) -> Deadline:
        self._check_open()
        seconds = self.options.timeout if timeout is None else timeout
        if seconds <= 0:
            raise InvalidInputError(f"timeout must be > 0, got {seconds}")
        return Deadline(seconds)

    def _failover(self, deadline: Deadline, model: str | None = None) -> Failover:
        def served() -> None:
            if model:
                # Only models that served once are health-probed: a misspelt name must
                # not mark every endpoint unhealthy.
                self._watched.add(model)

        return Failover(self._balancer, self._retry, deadline, served)

    @staticmethod
    def _vanished(call: InFlight | None, exc: BaseException) -> BaseException:
        """The error of an attempt: ``exc``, unless the call was ended because its model
        vanished from the endpoint, which is said as such (and may run elsewhere)."""
        if call is None or call.abort.reason is None:
            return exc
        return ModelNotReadyError(call.abort.reason)

    # --- requests and results ------------------------------------------------------------

    @staticmethod
    def _embed_chunks(texts: Sequence[str], info: ModelInfo) -> list[Sequence[str]]:
        """The texts in request-sized chunks, all validated before anything is sent."""
        embedding_inputs(texts)
        return [texts[start:end] for start, end in chunk_bounds(len(texts), info.rows_per_request)]

    @staticmethod
    def _embed_op(model: str, chunk: Sequence[str]) -> Op[Outputs]:
        return infer(model, embedding_inputs(chunk), [EMBED_OUTPUT])

    @staticmethod
    def _embed_result(outputs: Mapping[str, np.ndarray], chunk: Sequence[str]) -> np.ndarray:
        return embedding_output(outputs, len(chunk))

    @staticmethod
    def _join_embeddings(parts: Sequence[np.ndarray], info: ModelInfo) -> np.ndarray:
        if not parts:
            dims = info.output_dims.get(EMBED_OUTPUT) or (0,)
            return np.zeros((0, dims[-1]), dtype=np.float32)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    @staticmethod
    def _generation_fields(prompt: str, stream: bool, sampling: Mapping[str, Any]) -> dict[str, str | bool]:
        """The request's inputs, validated before any I/O (bad sampling keys fail here)."""
        return generation_fields(prompt, stream, sampling)

    @staticmethod
    def _generation_call(model: str, fields: Mapping[str, str | bool], info: ModelInfo) -> GenerationCall:
        return GenerationCall(model, fields, info.max_batch_size > 0)

    @staticmethod
    def _generation_result(responses: Iterable[Mapping[str, Any]], endpoint: Endpoint) -> GenerationResult:
        """The responses of one generation joined, attributed to the endpoint that served them."""
        return combine_pieces((generation_piece(o) for o in responses), endpoint.url)

    def _health_report(self, probes: Mapping[Endpoint, Probe]) -> list[dict[str, object]]:
        """Record fresh probe results and report every endpoint: balancer state, ready, reason."""
        for endpoint, probe in probes.items():
            self._balancer.set_health(endpoint, probe.reason is None, probe.reason)
        by_url = {e.url: probes[e].reason for e in probes}
        return [
            {
                **state,
                "ready": by_url[str(state["endpoint"])] is None,
                "reason": by_url[str(state["endpoint"])],
            }
            for state in self._balancer.snapshot()
        ]

    @staticmethod
    def _merge_stats(answers: Mapping[Endpoint, dict[str, Any] | ClientError]) -> dict[str, dict[str, Any]]:
        """Statistics per reachable endpoint URL; the first error when none answered."""
        found = {e.url: normalize_stats(a) for e, a in answers.items() if not isinstance(a, ClientError)}
        errors = [a for a in answers.values() if isinstance(a, ClientError)]
        if not found and errors:
            raise errors[0]
        return found
