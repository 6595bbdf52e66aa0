"""From an OpenAI request to what the models take: texts, prompts, messages, sampling keys.

Each function raises a 400 ``GatewayError`` naming the field at fault; values
inside the sampling keys' ranges are checked by the client against the
generation model's own declaration (``ds_triton_interface.SAMPLING_KEYS``).
"""

from __future__ import annotations

from typing import Any

from ds_triton_gateway.errors import invalid
from ds_triton_gateway.schemas import ChatMessageIn, ChatRequest, CompletionRequest
from ds_triton_gateway.text import ROLE_NAMES, Message
from ds_triton_interface import SAMPLING_KEYS

#: Sampling keys OpenAI's API reaches through its own fields; the others may be sent as
#: extra body fields, as vLLM's OpenAI server takes them.
_OPENAI_FIELDS = frozenset({"max_tokens", "temperature", "top_p", "stop", "seed", "n", "best_of", "logprobs"})
_NOT_PASSED = frozenset({"prompt_logprobs"})  # no place for it in OpenAI's response
PASS_THROUGH = frozenset(SAMPLING_KEYS) - _OPENAI_FIELDS - _NOT_PASSED

#: OpenAI fields mapped to the sampling key of the same name when the model has it.
_OPTIONAL_KEYS = ("frequency_penalty", "presence_penalty", "logit_bias")

#: Chat fields refused unless left at their "off" value: this server calls no tools and
#: returns text only.
_CHAT_OFF_VALUES: dict[str, tuple[Any, ...]] = {
    "tools": (None, []),
    "tool_choice": (None, "none", "auto"),
    "functions": (None, []),
    "function_call": (None, "none", "auto"),
    "audio": (None,),
    "modalities": (None, ["text"]),
    "prediction": (None,),
    "web_search_options": (None,),
}


def _token_arrays(value: Any) -> bool:
    return isinstance(value, list) and any(not isinstance(item, str) for item in value)


def embedding_texts(value: str | list[Any], limit: int) -> list[str]:
    """The texts of an embeddings ``input``."""
    texts = [value] if isinstance(value, str) else value
    if _token_arrays(texts):
        raise invalid(
            "'input' holds token ids; this gateway embeds text only: send a string or a list of strings",
            "input", "token_input_not_supported",
        )  # fmt: skip
    if not texts:
        raise invalid("'input' must not be empty", "input")
    if len(texts) > limit:
        raise invalid(f"'input' has {len(texts)} texts; at most {limit} are accepted in one request", "input")
    for i, text in enumerate(texts):
        if not text.strip():
            raise invalid(f"'input[{i}]' is empty; send non-blank text", "input")
    return list(texts)


def completion_prompts(value: str | list[Any]) -> list[str]:
    """The prompts of a completions ``prompt`` (one choice per prompt)."""
    prompts = [value] if isinstance(value, str) else value
    if _token_arrays(prompts):
        raise invalid(
            "'prompt' holds token ids; this gateway takes text only: send a string or a list of strings",
            "prompt", "token_input_not_supported",
        )  # fmt: skip
    if not prompts:
        raise invalid("'prompt' must not be empty", "prompt")
    for i, prompt in enumerate(prompts):
        if not prompt:
            raise invalid(f"'prompt[{i}]' is empty", "prompt")
    return list(prompts)


def chat_messages(messages: list[ChatMessageIn]) -> list[Message]:
    """The conversation as (role, text) messages."""
    if not messages:
        raise invalid("'messages' must hold at least one message", "messages")
    out: list[Message] = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if message.role not in ROLE_NAMES:
            raise invalid(
                f"'{where}.role' is {message.role!r}; this server calls no tools, so roles are "
                f"{', '.join(ROLE_NAMES)}", "messages",
            )  # fmt: skip
        if message.tool_calls:
            raise invalid(f"'{where}.tool_calls': this server calls no tools", "messages")
        out.append(Message(message.role, _content(message, where)))
    return out


def _content(message: ChatMessageIn, where: str) -> str:
    if message.content is None:
        if message.role == "assistant":
            return ""
        raise invalid(f"'{where}.content' is missing", "messages")
    if isinstance(message.content, str):
        return message.content
    texts = []
    for j, part in enumerate(message.content):
        if part.type != "text" or part.text is None:
            raise invalid(
                f"'{where}.content[{j}]' is of type {part.type!r}; these models take text parts only",
                "messages",
            )
        texts.append(part.text)
    return "".join(texts)


def sampling_of(request: CompletionRequest | ChatRequest) -> dict[str, Any]:
    """The sampling keys of a completions or chat request (``None``: the model's default)."""
    if request.n not in (None, 1):
        raise invalid(f"'n' is {request.n}; these models return one choice per prompt (n=1)", "n")
    sampling: dict[str, Any] = {
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
        "top_p": request.top_p,
        "stop": request.stop or None,
        "seed": request.seed,
    }
    for name in _OPTIONAL_KEYS:
        value = getattr(request, name)
        if name in SAMPLING_KEYS:
            sampling[name] = value
        elif value:
            raise invalid(f"'{name}' is not supported by this server's generation models", name)
    for name, value in (request.model_extra or {}).items():
        if name not in PASS_THROUGH:
            raise invalid(f"unrecognized request argument supplied: {name}", name, "unknown_parameter")
        sampling[name] = value
    if isinstance(request, ChatRequest):
        _check_chat_fields(request)
        if request.max_completion_tokens is not None:
            sampling["max_tokens"] = request.max_completion_tokens
        if request.top_logprobs is not None and not request.logprobs:
            raise invalid("'top_logprobs' needs 'logprobs': true", "top_logprobs")
        if request.logprobs:
            sampling["logprobs"] = request.top_logprobs or 0
    else:
        if request.best_of not in (None, 1):
            raise invalid(f"'best_of' is {request.best_of}; only 1 is supported", "best_of")
        if request.suffix:
            raise invalid("'suffix' is not supported (no fill-in-the-middle)", "suffix")
        if request.logprobs is not None:
            sampling["logprobs"] = request.logprobs
            if request.echo:  # the prompt's tokens come back too, with their log-probabilities
                sampling["prompt_logprobs"] = request.logprobs
    return sampling


def _check_chat_fields(request: ChatRequest) -> None:
    for name, off in _CHAT_OFF_VALUES.items():
        if getattr(request, name) not in off:
            raise invalid(f"'{name}' is not supported: these models return text and call no tools", name)
    response_format = request.response_format
    if response_format is not None and (
        not isinstance(response_format, dict) or response_format.get("type") != "text"
    ):
        raise invalid("'response_format' other than {'type': 'text'} is not supported", "response_format")
