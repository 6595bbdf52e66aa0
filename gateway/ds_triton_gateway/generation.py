"""Completions and chat completions: one generation per prompt, answered whole or as SSE.

Both routes share the flow and differ in their response shape (``COMPLETION``,
``CHAT``). A streamed answer only starts (status 200) once the first generated
piece is in: every failure before it (bad sampling values, a prompt over the
model's limits, every replica at capacity) gets its own status and error
object. A failure after it is sent as an SSE event holding the error object,
then ``data: [DONE]``. A client that goes away cancels the generator, which
cancels the Triton stream and frees its sequence slot.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from ds_triton_client import AsyncClient, ClientError, GenerationPiece, TokenLogprob
from ds_triton_gateway.errors import from_client_error
from ds_triton_gateway.logprobs import chat_logprobs, completion_logprobs, echoed_completion_logprobs
from ds_triton_gateway.metrics import GatewayMetrics

DONE = b"data: [DONE]\n\n"


@dataclass(frozen=True)
class Plan:
    """One completions or chat request, ready to run.

    Attributes:
        model: The generation model.
        prompts: One prompt per choice.
        sampling: Sampling keys (``None`` values: the model's default).
        include_usage: Streams end with a usage chunk (``stream_options.include_usage``).
        echo: Completions: the prompt is returned before its completion.
        prompt_param: The request field the prompts came from (named in errors).
        logprobs: Log-probabilities asked for: how many most likely tokens to list per
            position (0: the chosen token's only); None: none asked for.
    """

    model: str
    prompts: Sequence[str]
    sampling: dict[str, Any]
    include_usage: bool = False
    echo: bool = False
    prompt_param: str = "prompt"
    logprobs: int | None = None


@dataclass(frozen=True)
class Shape:
    """How one route writes choices, whole and as stream chunks."""

    route: str
    object: str
    chunk_object: str
    id_prefix: str
    choice: Callable[[int, str, str | None, Logprobs], dict[str, Any]]
    chunk_choice: Callable[[int, str, str | None, bool, Logprobs], dict[str, Any]]
    chat: bool


Logprobs = dict[str, Any] | None


def _completion_choice(
    index: int, text: str, finish_reason: str | None, logprobs: Logprobs
) -> dict[str, Any]:
    return {"index": index, "text": text, "logprobs": logprobs, "finish_reason": finish_reason}


def _completion_chunk(
    index: int, text: str, finish_reason: str | None, first: bool, logprobs: Logprobs
) -> dict[str, Any]:
    return _completion_choice(index, text, finish_reason, logprobs)


def _chat_choice(index: int, text: str, finish_reason: str | None, logprobs: Logprobs) -> dict[str, Any]:
    message = {"role": "assistant", "content": text, "refusal": None}
    return {"index": index, "message": message, "logprobs": logprobs, "finish_reason": finish_reason}


def _chat_chunk(
    index: int, text: str, finish_reason: str | None, first: bool, logprobs: Logprobs
) -> dict[str, Any]:
    delta: dict[str, Any] = (
        {"role": "assistant", "content": text} if first else {"content": text} if text else {}
    )
    return {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish_reason}


COMPLETION = Shape("/v1/completions", "text_completion", "text_completion", "cmpl-", _completion_choice,
                   _completion_chunk, chat=False)  # fmt: skip
CHAT = Shape("/v1/chat/completions", "chat.completion", "chat.completion.chunk", "chatcmpl-", _chat_choice,
             _chat_chunk, chat=True)  # fmt: skip


def choice_logprobs(
    shape: Shape,
    plan: Plan,
    index: int,
    generated: Sequence[TokenLogprob | None] | None,
    prompt: Sequence[TokenLogprob | None] | None = None,
    offset: int = 0,
) -> Logprobs:
    """The ``logprobs`` of one choice (or chunk), in the route's shape; None when not asked for.

    ``prompt`` holds the prompt's entries when ``echo`` returns the prompt with them;
    ``offset`` is where the first generated token's text starts in the choice's text.
    """
    if plan.logprobs is None:
        return None
    entries = [e for e in generated or () if e is not None]
    if shape.chat:
        return chat_logprobs(entries, plan.logprobs)
    if plan.echo and prompt is not None:
        return echoed_completion_logprobs(plan.prompts[index], prompt, entries, plan.logprobs)
    return completion_logprobs(entries, plan.logprobs, offset)


def finish_reason(reason: str | None) -> str:
    """OpenAI's reason: ``length`` when max_tokens ended it, else ``stop`` (EOS, stop string)."""
    return "length" if reason == "length" else "stop"


@dataclass
class _Usage:
    prompt: int = 0
    completion: int = 0
    by_choice: dict[int, int] = field(default_factory=dict)  # prompt tokens, reported once per choice

    def add(self, index: int, piece: GenerationPiece) -> None:
        if piece.num_input_tokens is not None:
            self.by_choice[index] = piece.num_input_tokens
        self.completion += piece.num_output_tokens or 0

    def body(self) -> dict[str, int]:
        prompt = sum(self.by_choice.values())
        return {"prompt_tokens": prompt, "completion_tokens": self.completion,
                "total_tokens": prompt + self.completion}  # fmt: skip


class Generation:
    """Runs plans through the client and writes OpenAI's answers."""

    def __init__(self, client: AsyncClient, metrics: GatewayMetrics) -> None:
        self.client = client
        self.metrics = metrics

    async def complete(self, plan: Plan, shape: Shape) -> dict[str, Any]:
        """The whole answer (``stream`` false).

        Raises:
            GatewayError: A generation failed (the first failure; the others are cancelled).
        """
        tasks = [
            asyncio.ensure_future(self.client.generate(p, model=plan.model, **plan.sampling))
            for p in plan.prompts
        ]
        try:
            results = await asyncio.gather(*tasks)
        except ClientError as exc:
            for task in tasks:
                task.cancel()
            raise from_client_error(exc, plan.prompt_param) from None
        choices, usage = [], _Usage()
        for index, (prompt, result) in enumerate(zip(plan.prompts, results, strict=True)):
            text = prompt + result.text if plan.echo else result.text
            logprobs = choice_logprobs(shape, plan, index, result.logprobs, result.prompt_logprobs,
                                       len(prompt) if plan.echo else 0)  # fmt: skip
            choices.append(shape.choice(index, text, finish_reason(result.finish_reason), logprobs))
            usage.by_choice[index] = result.num_input_tokens or 0
            usage.completion += result.num_output_tokens or 0
        body = usage.body()
        self.metrics.usage(plan.model, body["prompt_tokens"], body["completion_tokens"])
        return {"id": shape.id_prefix + uuid.uuid4().hex, "object": shape.object, "created": int(time.time()),
                "model": plan.model, "choices": choices, "usage": body}  # fmt: skip

    async def stream(self, plan: Plan, shape: Shape, arrived: float) -> AsyncIterator[bytes]:
        """SSE events of the answer, the first one already generated.

        Raises:
            GatewayError: Generation failed before its first piece.
        """
        events = self._events(plan, shape, arrived)
        try:
            first = await anext(events)
        except ClientError as exc:
            raise from_client_error(exc, plan.prompt_param) from None
        return _prepend(first, events)

    async def _events(self, plan: Plan, shape: Shape, arrived: float) -> AsyncGenerator[bytes, None]:
        head = {"id": shape.id_prefix + uuid.uuid4().hex, "object": shape.chunk_object,
                "created": int(time.time()), "model": plan.model}  # fmt: skip
        if plan.include_usage:
            head["usage"] = None
        usage = _Usage()
        started: set[int] = set()
        offsets: dict[int, int] = {}  # where each choice's next text starts (completions logprobs)
        sent_any = timed = False
        streams = [self.client.stream_pieces(p, model=plan.model, **plan.sampling) for p in plan.prompts]
        try:
            async for index, piece in _merge(streams):
                usage.add(index, piece)
                text = piece.text
                first = index not in started
                if first and plan.echo:
                    text = plan.prompts[index] + text
                reason = finish_reason(piece.finish_reason) if piece.finish_reason else None
                if not (text or reason or first or piece.logprobs):
                    continue
                started.add(index)
                start = offsets.get(index, len(plan.prompts[index]) if plan.echo else 0)
                logprobs = choice_logprobs(shape, plan, index, piece.logprobs,
                                           piece.prompt_logprobs if first else None, start)  # fmt: skip
                offsets[index] = start + len(piece.text)
                if text and not timed:
                    self.metrics.ttft.labels(shape.route, plan.model).observe(time.perf_counter() - arrived)
                    timed = True
                yield _sse({**head, "choices": [shape.chunk_choice(index, text, reason, first, logprobs)]})
                sent_any = True
            body = usage.body()
            self.metrics.usage(plan.model, body["prompt_tokens"], body["completion_tokens"])
            if plan.include_usage:
                yield _sse({**head, "choices": [], "usage": body})
        except ClientError as exc:
            if not sent_any:
                raise
            yield _sse(from_client_error(exc, plan.prompt_param).body())
        yield DONE


def _sse(data: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(data) + b"\n\n"


async def _prepend(first: bytes, rest: AsyncGenerator[bytes, None]) -> AsyncGenerator[bytes, None]:
    try:
        yield first
        async for event in rest:
            yield event
    finally:
        await rest.aclose()


async def _merge(
    streams: Sequence[AsyncGenerator[GenerationPiece, None]],
) -> AsyncGenerator[tuple[int, GenerationPiece], None]:
    """Pieces of several streams as they arrive, each with its stream's index.

    Closing this generator (or cancelling its task) closes every stream, which
    cancels their Triton requests.
    """
    if len(streams) == 1:
        try:
            async for piece in streams[0]:
                yield 0, piece
        finally:
            await streams[0].aclose()
        return
    queue: asyncio.Queue[tuple[int, GenerationPiece | BaseException | None]] = asyncio.Queue()

    async def pump(index: int, stream: AsyncGenerator[GenerationPiece, None]) -> None:
        try:
            async for piece in stream:
                await queue.put((index, piece))
            await queue.put((index, None))
        except Exception as exc:
            await queue.put((index, exc))
        finally:
            await stream.aclose()

    tasks = [asyncio.create_task(pump(i, s)) for i, s in enumerate(streams)]
    try:
        running = len(tasks)
        while running:
            index, item = await queue.get()
            if item is None:
                running -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield index, item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
