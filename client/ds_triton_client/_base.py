"""What the sync and async clients share: settings, balancer, retry rules, model facts.

Like httpx's ``BaseClient``: everything that does not wait on I/O lives here, so
``Client`` and ``AsyncClient`` differ only in how they wait.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

from ds_triton_client.balancer import Balancer, EndpointState
from ds_triton_client.endpoints import Endpoint, parse_endpoints
from ds_triton_client.errors import (
    ClientError,
    DeadlineExceededError,
    InvalidInputError,
    StreamInterruptedError,
    map_error,
)
from ds_triton_client.model_info import ModelInfo
from ds_triton_client.options import ClientOptions, Protocol
from ds_triton_client.retry import Deadline, RetryPolicy

DEFAULT_EMBED_MODEL = "text_embedding"
DEFAULT_GENERATE_MODEL = "text_generation"


class BaseClient:
    """Shared state of a client over one or more Triton endpoints.

    Args:
        urls: One URL, a comma-separated list or a sequence (``http://h:p``, ``grpc://h:p``).
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
        self._balancer = Balancer(self.endpoints, self.options.max_fails, self.options.fail_timeout)
        self._retry = RetryPolicy(
            self.options.max_attempts, self.options.backoff_base, self.options.backoff_max
        )
        self._watched: set[str] = set(models)
        self._model_info: dict[str, ModelInfo] = {}

    @property
    def balancer(self) -> Balancer:
        """The endpoint balancer (read its ``snapshot()`` to see ejections)."""
        return self._balancer

    @property
    def watched_models(self) -> frozenset[str]:
        return frozenset(self._watched)

    def _deadline(self, timeout: float | None) -> Deadline:
        seconds = self.options.timeout if timeout is None else timeout
        if seconds <= 0:
            raise InvalidInputError(f"timeout must be > 0, got {seconds}")
        return Deadline(seconds)

    def _settle_failure(
        self,
        state: EndpointState,
        exc: Exception,
        attempt: int,
        tried: list[Endpoint],
        deadline: Deadline,
        stream_started: bool = False,
    ) -> tuple[ClientError, float]:
        """Record a failed attempt; raise unless the retry policy allows another.

        Returns the typed error and the backoff to sleep before the next attempt,
        with the endpoint added to ``tried`` so the next attempt goes elsewhere.
        """
        error = map_error(exc, state.endpoint.url)
        self._balancer.release(state, failure=str(error) if error.counts_against_endpoint else None)
        if stream_started:
            raise StreamInterruptedError(
                f"stream broke after it started: {error.message}", error.endpoint, error.status
            ) from exc
        if not self._retry.should_retry(error, attempt, stream_started):
            raise error from exc
        tried.append(state.endpoint)
        return error, min(self._retry.delay(attempt), deadline.remaining())

    def _settle_success(self, state: EndpointState, model: str | None = None) -> None:
        self._balancer.release(state)
        if model:
            # Only models that served once are health-probed: a misspelt name must
            # not mark every endpoint unhealthy.
            self._watched.add(model)

    @staticmethod
    def _deadline_error(deadline: Deadline, attempts: int, last: ClientError | None) -> DeadlineExceededError:
        cause = f"; last error: {last}" if last else ""
        return DeadlineExceededError(
            f"deadline of {deadline.seconds:.3g}s passed after {attempts} attempt(s){cause}",
            last.endpoint if last else None,
        )

    def _embedding_dim(self, info: ModelInfo) -> int:
        dims = info.output_dims.get("embedding") or (0,)
        return dims[-1]
