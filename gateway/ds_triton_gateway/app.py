"""The gateway's FastAPI application: OpenAI's routes over ``ds_triton_client``.

Routes: ``GET /v1/models`` (and ``/v1/models/{id}``), ``POST /v1/embeddings``,
``POST /v1/completions``, ``POST /v1/chat/completions``; ``GET /health`` and
``GET /metrics`` are open (no key). Balancing, health checks, retries and
failover across the Triton replicas are the client's; the gateway never
re-implements them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response, StreamingResponse
from starlette.exceptions import HTTPException

from ds_triton_client import AsyncClient, ClientError
from ds_triton_gateway.catalog import Catalog, ModelEntry
from ds_triton_gateway.embeddings import embedding_items, shorten
from ds_triton_gateway.errors import GatewayError, from_client_error, internal, invalid, model_not_found
from ds_triton_gateway.generation import CHAT, COMPLETION, Generation, Plan, Shape
from ds_triton_gateway.guard import Guard
from ds_triton_gateway.inputs import chat_messages, completion_prompts, embedding_texts, sampling_of
from ds_triton_gateway.metrics import CONTENT_TYPE, GatewayMetrics
from ds_triton_gateway.schemas import ChatRequest, CompletionRequest, EmbeddingRequest, parse_body
from ds_triton_gateway.settings import GatewaySettings
from ds_triton_gateway.text import ChatTemplateError

LOG = logging.getLogger("ds_triton_gateway")

OWNER = "ds-triton"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}  # no proxy buffering of streams


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), status, headers,
                    media_type="application/json")  # fmt: skip


class Gateway:
    """The state the routes share: settings, the repository's models, the client, metrics."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.catalog = Catalog(settings.model_repository)
        self.metrics = GatewayMetrics()
        self._client: AsyncClient | None = None
        self._generation: Generation | None = None
        self._warming: asyncio.Task[None] | None = None

    @property
    def client(self) -> AsyncClient:
        if self._client is None:
            raise RuntimeError("the gateway's client is not started (the app's lifespan did not run)")
        return self._client

    @property
    def generation(self) -> Generation:
        if self._generation is None:
            raise RuntimeError("the gateway's client is not started (the app's lifespan did not run)")
        return self._generation

    async def start(self) -> None:
        options = {**self.settings.client_options}
        self._client = AsyncClient(
            self.settings.urls,
            protocol="grpc",
            timeout=self.settings.request_timeout,
            # The gateway bounds requests itself (max_in_flight); the client must not queue them.
            max_concurrency=self.settings.max_in_flight,
            **options,
        )
        self._generation = Generation(self._client, self.metrics)
        # Tokenizers load in the background: the gateway answers at once, and the first
        # request that needs one waits for it (or loads it) instead of every request.
        self._warming = asyncio.create_task(self.catalog.warm())

    async def stop(self) -> None:
        if self._warming is not None:
            self._warming.cancel()
            await asyncio.gather(self._warming, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()

    def model(self, request: Request, name: str, task: str) -> ModelEntry:
        """The repository's model ``name``, which must serve ``task``."""
        entry = self.catalog.get(name)
        if entry is None:
            raise model_not_found(name)
        if entry.task != task:
            message = f"model {name!r} serves task {entry.task!r}; this route needs a {task!r} model"
            raise invalid(message, "model", "model_task_mismatch")
        request.state.model = name  # the request's metrics label (see guard.MODEL_STATE)
        return entry

    async def ready(self, entry: ModelEntry) -> bool:
        return await self.client.ready(entry.name)

    def model_card(self, entry: ModelEntry) -> dict[str, Any]:
        return {"id": entry.name, "object": "model", "created": int(entry.modified), "owned_by": OWNER,
                "task": entry.task}  # fmt: skip


def create_app(settings: GatewaySettings) -> FastAPI:
    """The gateway for ``settings`` (its client starts with the app's lifespan)."""
    gateway = Gateway(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await gateway.start()
        try:
            yield
        finally:
            await gateway.stop()

    app = FastAPI(title="ds-triton OpenAI-compatible gateway", lifespan=lifespan, docs_url=None,
                  redoc_url=None, openapi_url=None)  # fmt: skip
    app.state.gateway = gateway
    app.add_middleware(
        Guard, keys=settings.api_keys, max_bytes=settings.max_request_bytes,
        max_in_flight=settings.max_in_flight, metrics=gateway.metrics,
    )  # fmt: skip
    _add_error_handlers(app)

    @app.get("/health")
    async def health() -> Response:
        return json_response({"status": "ok"})

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(gateway.metrics.render(), media_type=CONTENT_TYPE)

    @app.get("/v1/models")
    async def list_models() -> Response:
        entries = gateway.catalog.entries()
        ready = await asyncio.gather(*(gateway.ready(e) for e in entries))
        cards = [gateway.model_card(e) for e, ok in zip(entries, ready, strict=True) if ok]
        return json_response({"object": "list", "data": cards})

    @app.get("/v1/models/{name}")
    async def retrieve_model(name: str) -> Response:
        entry = gateway.catalog.get(name)
        if entry is None or not await gateway.ready(entry):
            raise model_not_found(name)
        return json_response(gateway.model_card(entry))

    @app.post("/v1/embeddings")
    async def embeddings(request: Request) -> Response:
        body = parse_body(await request.body(), EmbeddingRequest)
        entry = gateway.model(request, body.model, "embedding")
        request.state.prompt_param = "input"
        texts = embedding_texts(body.input, settings.max_embedding_inputs)
        text = await gateway.catalog.text(entry)
        vectors = shorten(await gateway.client.embed(texts, model=entry.name), body.dimensions)
        tokens = text.count_embedding_tokens(texts)
        gateway.metrics.usage(entry.name, tokens, None)
        return json_response({
            "object": "list", "model": entry.name, "data": embedding_items(vectors, body.encoding_format),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        })  # fmt: skip

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        arrived = time.perf_counter()
        body = parse_body(await request.body(), CompletionRequest)
        entry = gateway.model(request, body.model, "generation")
        prompts, sampling = completion_prompts(body.prompt), sampling_of(body)
        plan = Plan(entry.name, prompts, sampling, include_usage=_include_usage(body), echo=bool(body.echo),
                    logprobs=body.logprobs)  # fmt: skip
        return await _answer(gateway.generation, plan, COMPLETION, bool(body.stream), arrived)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        arrived = time.perf_counter()
        body = parse_body(await request.body(), ChatRequest)
        entry = gateway.model(request, body.model, "generation")
        request.state.prompt_param = "messages"
        messages = chat_messages(body.messages)
        sampling = sampling_of(body)
        text = await gateway.catalog.text(entry)
        try:
            prompt = text.chat_prompt(messages)
        except ChatTemplateError as exc:
            raise invalid(str(exc), "messages") from None
        if sampling["max_tokens"] is None:
            sampling["max_tokens"] = text.default_max_tokens(prompt)
        plan = Plan(entry.name, [prompt], sampling, include_usage=_include_usage(body),
                    prompt_param="messages", logprobs=sampling.get("logprobs"))  # fmt: skip
        return await _answer(gateway.generation, plan, CHAT, bool(body.stream), arrived)

    return app


def _include_usage(body: CompletionRequest | ChatRequest) -> bool:
    return bool(body.stream and body.stream_options and body.stream_options.include_usage)


async def _answer(generation: Generation, plan: Plan, shape: Shape, stream: bool, arrived: float) -> Response:
    if not stream:
        return json_response(await generation.complete(plan, shape))
    events = await generation.stream(plan, shape, arrived)
    return StreamingResponse(events, media_type="text/event-stream", headers=SSE_HEADERS)


def _add_error_handlers(app: FastAPI) -> None:
    async def gateway_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, GatewayError)
        return json_response(exc.body(), exc.status, exc.headers())

    async def client_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ClientError)
        error = from_client_error(exc, getattr(request.state, "prompt_param", "prompt"))
        return json_response(error.body(), error.status, error.headers())

    async def http_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        kind = "invalid_request_error" if exc.status_code < 500 else "server_error"
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        error = GatewayError(exc.status_code, str(exc.detail), kind, None, code)
        return json_response(error.body(), error.status)

    async def unexpected(_request: Request, exc: Exception) -> Response:
        LOG.exception("unexpected error", exc_info=exc)
        error = internal(exc)
        return json_response(error.body(), error.status)

    app.add_exception_handler(GatewayError, gateway_error)
    app.add_exception_handler(ClientError, client_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)
