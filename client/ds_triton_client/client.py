"""The blocking client: ``Client("http://a:8000,http://b:8000").embed([...])``."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np

from ds_triton_client._base import DEFAULT_EMBED_MODEL, DEFAULT_GENERATE_MODEL, BaseClient
from ds_triton_client.codec import GenerationPiece, GenerationResult, generation_piece
from ds_triton_client.concurrency import map_bounded
from ds_triton_client.endpoints import Endpoint
from ds_triton_client.errors import ClientError, DeadlineExceededError, PermissionDeniedError
from ds_triton_client.health import SyncHealthChecker, probe_sync
from ds_triton_client.inflight import Abort
from ds_triton_client.model_info import ModelInfo
from ds_triton_client.options import ClientOptions
from ds_triton_client.retry import Deadline
from ds_triton_client.transport import SyncTransport, make_sync_transport
from ds_triton_client.transport.base import model_config, model_metadata, repository_index, statistics

T = TypeVar("T")
Operation = Callable[[SyncTransport, float], T]
Opener = Callable[[SyncTransport, float, Abort], Generator[T, None, None]]


class Client(BaseClient):
    """Blocking client over one or more Triton endpoints (see ``BaseClient`` for arguments).

    Use as a context manager, or call ``close()``: it owns a health-check thread,
    a bounded worker pool for chunked calls and one connection pool per endpoint.
    """

    _transports: dict[Endpoint, SyncTransport]

    def _make_transport(self, endpoint: Endpoint, options: ClientOptions) -> SyncTransport:
        return make_sync_transport(endpoint, options)

    def _setup(self) -> None:
        self._slots = threading.BoundedSemaphore(self.options.max_concurrency)
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self._health = SyncHealthChecker(
            self._balancer, self._transports, lambda: self.watched_models, self.options, self._inflight
        )
        if self.options.health_interval > 0:
            self._health.start()

    # --- the one I/O loop: attempts over endpoints ---------------------------------------

    def _run(self, open_items: Opener[T], deadline: Deadline, model: str | None = None) -> Iterator[T]:
        """Yield the items of the first attempt that succeeds, failing over as allowed.

        An attempt that fails before its first item is repeated elsewhere (if the
        error allows); one that fails after it raises ``StreamInterruptedError``.
        """
        failover = self._failover(deadline, model)
        while True:
            state = failover.next_endpoint()
            started = False
            with self._inflight.track(state.endpoint, model or "") as call:
                try:
                    with (
                        self._slot(deadline),
                        contextlib.closing(
                            open_items(self._transports[state.endpoint], deadline.remaining(), call.abort)
                        ) as items,
                    ):
                        for item in items:
                            started = True
                            call.heard()
                            yield item
                except GeneratorExit:
                    failover.abandoned(state)
                    raise
                except Exception as exc:
                    delay = failover.failed(state, self._vanished(call, exc), started)
                else:
                    failover.succeeded(state)
                    return
            time.sleep(delay)

    def _call(self, operation: Operation[T], deadline: Deadline, model: str | None = None) -> T:
        """Run one request-response ``operation`` with failover."""

        def once(transport: SyncTransport, left: float, abort: Abort) -> Generator[T, None, None]:
            yield operation(transport, left)

        (result,) = self._run(once, deadline, model)
        return result

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
        """The model's batching and output facts, read once from its config (or its
        metadata, where an admin key guards the config API)."""
        self._check_open()

        def describe(transport: SyncTransport, left: float) -> ModelInfo:
            try:
                return ModelInfo.from_config(transport.call(model_config(model), left))
            except PermissionDeniedError:
                return ModelInfo.from_metadata(transport.call(model_metadata(model), left))

        if model not in self._model_info:
            self._model_info[model] = self._call(describe, self._deadline(timeout))
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
        chunks = self._embed_chunks(texts, info)

        def run(chunk: Sequence[str]) -> np.ndarray:
            op = self._embed_op(model, chunk)
            answer = self._call(lambda t, left: t.call(op, left), deadline, model)
            return self._embed_result(answer, chunk)

        if len(chunks) > 1:
            parts = map_bounded(self._executor(), run, chunks, self.options.max_concurrency)
        else:
            parts = [run(chunk) for chunk in chunks]
        return self._join_embeddings(parts, info)

    def generate(
        self, prompt: str, model: str = DEFAULT_GENERATE_MODEL, timeout: float | None = None, **sampling: Any
    ) -> GenerationResult:
        """Generate a completion of ``prompt``; ``sampling``: any key of
        ``ds_triton_interface.SAMPLING_KEYS`` (max_tokens, temperature, top_p, top_k, min_p, seed,
        stop, penalties, logit_bias, logprobs, prompt_logprobs, ...).

        Returns:
            ``GenerationResult`` with ``text``, ``num_input_tokens``/``num_output_tokens``,
            ``finish_reason``, the ``endpoint`` that served it and, with ``logprobs=N``, each
            token's log-probability and its N most likely alternatives.
        """
        fields = self._generation_fields(prompt, False, sampling)
        deadline = self._deadline(timeout)
        call = self._generation_call(model, fields, self.model_info(model, deadline.remaining()))

        def run(
            transport: SyncTransport, left: float, abort: Abort
        ) -> Generator[GenerationResult, None, None]:
            yield self._generation_result(transport.generate(call, left, abort), transport.endpoint)

        (result,) = self._run(run, deadline, model)
        return result

    def stream(
        self, prompt: str, model: str = DEFAULT_GENERATE_MODEL, timeout: float | None = None, **sampling: Any
    ) -> Generator[str, None, None]:
        """Yield the generated text piece by piece as the server produces it.

        Failures before the first piece fail over like any call; after it, the
        stream is never retried and ``StreamInterruptedError`` is raised.
        """
        with contextlib.closing(self.stream_pieces(prompt, model, timeout, **sampling)) as pieces:
            for piece in pieces:
                if piece.text:
                    yield piece.text

    def stream_pieces(
        self, prompt: str, model: str = DEFAULT_GENERATE_MODEL, timeout: float | None = None, **sampling: Any
    ) -> Generator[GenerationPiece, None, None]:
        """Yield every streamed response as it arrives: its new text, and the token counts and
        finish reason the server sends with it (the last response has the finish reason).

        Failures before the first piece fail over like ``stream``; after it, the stream
        is never retried and ``StreamInterruptedError`` is raised.
        """
        fields = self._generation_fields(prompt, True, sampling)
        deadline = self._deadline(timeout)
        call = self._generation_call(model, fields, self.model_info(model, deadline.remaining()))

        def pieces(
            transport: SyncTransport, left: float, abort: Abort
        ) -> Generator[GenerationPiece, None, None]:
            with contextlib.closing(transport.generate(call, left, abort)) as responses:
                for outputs in responses:
                    yield generation_piece(outputs)

        yield from self._run(pieces, deadline, model)

    def health(self) -> list[dict[str, object]]:
        """Probe every endpoint now; each entry: endpoint, ready, reason, and balancer state."""
        self._check_open()
        timeout = self.options.health_timeout
        return self._health_report(
            {e: probe_sync(t, self.watched_models, timeout) for e, t in self._transports.items()}
        )

    def ready(self, model: str) -> bool:
        """Whether at least one endpoint has ``model`` ready."""
        self._check_open()
        timeout = self.options.health_timeout
        models = frozenset([model])
        return any(probe_sync(t, models, timeout).reason is None for t in self._transports.values())

    def models(self, timeout: float | None = None) -> list[dict[str, Any]]:
        """The model repository index (name, version, state) of a healthy endpoint."""
        return self._call(lambda t, left: t.call(repository_index(), left), self._deadline(timeout))

    def stats(self, model: str, timeout: float | None = None) -> dict[str, dict[str, Any]]:
        """Inference statistics of ``model`` per reachable endpoint URL (counters as ints)."""
        deadline = self._deadline(timeout)
        answers: dict[Endpoint, dict[str, Any] | ClientError] = {}
        for endpoint, transport in self._transports.items():
            try:
                answers[endpoint] = transport.call(statistics(model), deadline.remaining())
            except ClientError as exc:
                answers[endpoint] = exc
        return self._merge_stats(answers)

    def close(self) -> None:
        """Stop the health thread, the worker pool and every connection pool (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._health.stop()
        with self._pool_lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None
        for transport in self._transports.values():
            transport.close()

    def __enter__(self) -> Client:
        self._check_open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
