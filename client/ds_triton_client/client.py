"""The blocking client: ``Client("http://a:8000,http://b:8000").embed([...])``."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np

from ds_triton_client._base import DEFAULT_EMBED_MODEL, DEFAULT_GENERATE_MODEL, BaseClient
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
from ds_triton_client.concurrency import map_bounded
from ds_triton_client.endpoints import Endpoint
from ds_triton_client.errors import ClientError, DeadlineExceededError
from ds_triton_client.health import SyncHealthChecker, probe_sync
from ds_triton_client.model_info import ModelInfo
from ds_triton_client.options import ClientOptions, Protocol
from ds_triton_client.retry import Deadline
from ds_triton_client.transport import SyncTransport, make_sync_transport

T = TypeVar("T")
Operation = Callable[[SyncTransport, float], T]


class Client(BaseClient):
    """Blocking client over one or more Triton endpoints (see ``BaseClient`` for arguments).

    Use as a context manager, or call ``close()``: it owns a health-check thread,
    a bounded worker pool for chunked calls and one connection pool per endpoint.
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
        super().__init__(urls, options=options, protocol=protocol, models=models, **overrides)
        self._transports: dict[Endpoint, SyncTransport] = {
            e: make_sync_transport(e, self.options) for e in self.endpoints
        }
        self._slots = threading.BoundedSemaphore(self.options.max_concurrency)
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self._health = SyncHealthChecker(
            self._balancer,
            self._transports,
            lambda: self.watched_models,
            self.options.health_interval,
            self.options.health_timeout,
        )
        if self.options.health_interval > 0:
            self._health.start()

    # --- the retry/failover loop ---------------------------------------------------------

    def _call(self, operation: Operation[T], deadline: Deadline, model: str | None = None) -> T:
        """Run ``operation`` on the best endpoint, failing over and backing off as allowed."""
        tried: list[Endpoint] = []
        last: ClientError | None = None
        for attempt in range(1, self._retry.max_attempts + 1):
            if deadline.expired():
                raise self._deadline_error(deadline, attempt - 1, last)
            state = self._balancer.acquire(avoid=tried)
            try:
                with self._slot(deadline):
                    result = operation(self._transports[state.endpoint], deadline.remaining())
            except Exception as exc:
                last, backoff = self._settle_failure(state, exc, attempt, tried, deadline)
                time.sleep(backoff)
                continue
            self._settle_success(state, model)
            return result
        raise last if last else self._deadline_error(deadline, 0, None)

    @contextlib.contextmanager
    def _slot(self, deadline: Deadline) -> Iterator[None]:
        if not self._slots.acquire(timeout=deadline.remaining()):
            raise DeadlineExceededError("deadline passed waiting for a free request slot")
        try:
            yield
        finally:
            self._slots.release()

    def _executor(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.options.max_concurrency, thread_name_prefix="ds-triton")
            return self._pool

    # --- model facts ---------------------------------------------------------------------

    def model_info(self, model: str, timeout: float | None = None) -> ModelInfo:
        """The model's batching and output facts, read once from its config."""
        if model not in self._model_info:
            config = self._call(lambda t, left: t.model_config(model, left), self._deadline(timeout))
            self._model_info[model] = ModelInfo.from_config(config)
        return self._model_info[model]

    # --- calls ---------------------------------------------------------------------------

    def embed(
        self, texts: Sequence[str], model: str = DEFAULT_EMBED_MODEL, timeout: float | None = None
    ) -> np.ndarray:
        """Embed ``texts``; returns float32 ``(len(texts), dim)`` in input order.

        Inputs larger than the model's ``max_batch_size`` are split into chunks that
        run concurrently (at most ``max_concurrency`` at a time). ``timeout`` bounds
        the whole call.

        Raises:
            InvalidInputError: A text is not a string, or the server rejected the input.
            DeadlineExceededError: The call did not finish within ``timeout``.
            ClientError: Any other failure, typed (see ``ds_triton_client.errors``).
        """
        if isinstance(texts, str):
            texts = [texts]
        deadline = self._deadline(timeout)
        info = self.model_info(model, deadline.remaining())
        if not texts:
            return np.zeros((0, self._embedding_dim(info)), dtype=np.float32)
        embedding_inputs(texts)  # validate everything before sending anything
        bounds = chunk_bounds(len(texts), info.rows_per_request)

        def run(bound: tuple[int, int]) -> np.ndarray:
            chunk = texts[bound[0] : bound[1]]
            outputs = self._call(
                lambda t, left: t.infer(model, embedding_inputs(chunk), [EMBED_OUTPUT], left), deadline, model
            )
            return embedding_output(outputs, len(chunk))

        if len(bounds) == 1:
            return run(bounds[0])
        return np.concatenate(map_bounded(self._executor(), run, bounds, self.options.max_concurrency))

    def generate(
        self, prompt: str, model: str = DEFAULT_GENERATE_MODEL, timeout: float | None = None, **sampling: Any
    ) -> GenerationResult:
        """Generate a completion of ``prompt``; ``sampling``: max_tokens, temperature, top_p, top_k,
        seed, stop, ignore_eos.

        Returns:
            ``GenerationResult`` with ``text`` and ``num_input_tokens``/``num_output_tokens``.
        """
        deadline = self._deadline(timeout)
        fields = generation_fields(prompt, False, sampling)
        batched = self.model_info(model, deadline.remaining()).max_batch_size > 0
        served: list[str] = []

        def run(transport: SyncTransport, left: float) -> GenerationResult:
            result = combine_pieces(
                generation_piece(o) for o in transport.generate(model, fields, batched, left)
            )
            served.append(getattr(transport, "endpoint", ""))
            return result

        result = self._call(run, deadline, model)
        result.endpoint = str(served[-1]) if served else None
        return result

    def stream(
        self, prompt: str, model: str = DEFAULT_GENERATE_MODEL, timeout: float | None = None, **sampling: Any
    ) -> Generator[str, None, None]:
        """Yield the generated text piece by piece as the server produces it.

        Failures before the first piece fail over like any call; after it, the
        stream is never retried and ``StreamInterruptedError`` is raised.
        """
        deadline = self._deadline(timeout)
        fields = generation_fields(prompt, True, sampling)
        batched = self.model_info(model, deadline.remaining()).max_batch_size > 0
        tried: list[Endpoint] = []
        last: ClientError | None = None
        for attempt in range(1, self._retry.max_attempts + 1):
            if deadline.expired():
                raise self._deadline_error(deadline, attempt - 1, last)
            state = self._balancer.acquire(avoid=tried)
            started = False
            try:
                with (
                    self._slot(deadline),
                    contextlib.closing(
                        self._transports[state.endpoint].generate(
                            model, fields, batched, deadline.remaining()
                        )
                    ) as responses,
                ):
                    for outputs in responses:
                        piece = generation_piece(outputs)
                        if piece.text:
                            started = True
                            yield piece.text
            except GeneratorExit:
                self._balancer.release(state)  # the consumer stopped: not the endpoint's fault
                raise
            except Exception as exc:
                last, backoff = self._settle_failure(state, exc, attempt, tried, deadline, started)
                time.sleep(backoff)
                continue
            self._settle_success(state, model)
            return
        if last:
            raise last

    def health(self) -> list[dict[str, object]]:
        """Probe every endpoint now; each entry: endpoint, ready, reason, and balancer state."""
        report = []
        for state in self._balancer.snapshot():
            endpoint = next(e for e in self.endpoints if e.url == state["endpoint"])
            reason = probe_sync(self._transports[endpoint], self.watched_models, self.options.health_timeout)
            self._balancer.set_health(endpoint, reason is None, reason)
            report.append({**state, "ready": reason is None, "reason": reason})
        return report

    def ready(self, model: str) -> bool:
        """Whether at least one endpoint has ``model`` ready."""
        timeout = self.options.health_timeout
        return any(
            t.server_ready(timeout) and t.model_ready(model, timeout) for t in self._transports.values()
        )

    def models(self, timeout: float | None = None) -> list[dict[str, Any]]:
        """The model repository index (name, version, state) of a healthy endpoint."""
        return self._call(lambda t, left: t.models(left), self._deadline(timeout))

    def stats(self, model: str, timeout: float | None = None) -> dict[str, dict[str, Any]]:
        """Inference statistics of ``model`` per reachable endpoint URL (counters as ints)."""
        deadline = self._deadline(timeout)
        found: dict[str, dict[str, Any]] = {}
        errors: list[ClientError] = []
        for endpoint, transport in self._transports.items():
            try:
                found[endpoint.url] = normalize_stats(transport.stats(model, deadline.remaining()))
            except ClientError as exc:
                errors.append(exc)
        if not found and errors:
            raise errors[0]
        return found

    def close(self) -> None:
        """Stop the health thread, the worker pool and every connection pool."""
        self._health.stop()
        with self._pool_lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None
        for transport in self._transports.values():
            transport.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
