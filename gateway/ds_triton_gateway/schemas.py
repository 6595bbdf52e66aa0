"""The OpenAI request bodies the gateway reads, as pydantic models.

Every field of OpenAI's own API is declared, so requests from the official SDKs,
LangChain and the like parse whatever optional fields they send; what the models
cannot do (tools, several choices, audio) is refused by name in ``sampling``.
Fields outside OpenAI's API are kept as extras: the generation model's own
sampling keys (``top_k``, ``min_p``, ``repetition_penalty``, ... as vLLM's
OpenAI server accepts them) pass through, anything else is refused as OpenAI
refuses it.
"""

from __future__ import annotations

import json
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ds_triton_gateway.errors import GatewayError, invalid

T = TypeVar("T", bound=BaseModel)


class _Body(BaseModel):
    model_config = ConfigDict(extra="allow", protected_namespaces=())

    model: str = Field(min_length=1)


class EmbeddingRequest(_Body):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None
    user: str | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool = False


class _GenerationBody(_Body):
    """Fields completions and chat share."""

    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    logit_bias: dict[str, float] | None = None
    user: str | None = None
    # Accepted and without effect here (bookkeeping on OpenAI's side).
    metadata: Any = None
    store: bool | None = None
    service_tier: str | None = None
    prompt_cache_key: str | None = None
    safety_identifier: str | None = None


class CompletionRequest(_GenerationBody):
    prompt: str | list[str] | list[int] | list[list[int]]
    best_of: int | None = None
    echo: bool | None = False
    logprobs: int | None = None
    suffix: str | None = None


class TextPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None


class ChatMessageIn(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: str
    content: str | list[TextPart] | None = None
    name: str | None = None
    tool_calls: Any = None


class ChatRequest(_GenerationBody):
    messages: list[ChatMessageIn]
    max_completion_tokens: int | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    # Refused unless left at their "off" value (see sampling.unsupported_fields).
    tools: Any = None
    tool_choice: Any = None
    functions: Any = None
    function_call: Any = None
    response_format: Any = None
    audio: Any = None
    modalities: Any = None
    prediction: Any = None
    web_search_options: Any = None
    # Accepted and without effect here.
    parallel_tool_calls: bool | None = None
    reasoning_effort: str | None = None
    verbosity: str | None = None


def parse_body(raw: bytes, model: type[T]) -> T:
    """Parse a JSON body into ``model``.

    Raises:
        GatewayError: 400 naming the first field at fault (or saying the body is not JSON).
    """
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise invalid(f"the request body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(data, dict):
        raise invalid("the request body must be a JSON object", code="invalid_json")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _validation_error(exc) from None


def _validation_error(exc: ValidationError) -> GatewayError:
    first = exc.errors()[0]
    location = [str(part) for part in first["loc"]]
    # A union reports the alternative it tried (``str``, ``list[str]``) as part of the path.
    path = [p for p in location if not any(c in p for c in "[]") and p not in ("str", "int")]
    param = ".".join(path) or None
    if first["type"] == "missing":
        return invalid(f"missing required parameter: {param!r}", param, "missing_required_parameter")
    if first["type"] == "extra_forbidden":
        return invalid(f"unrecognized request argument supplied: {param}", param, "unknown_parameter")
    return invalid(f"invalid value for {param!r}: {first['msg']}", param)
