"""Log-probabilities in OpenAI's two shapes, from the generation model's vLLM-style output.

The model returns, per token, the chosen token and the ``logprobs`` most likely
ones (``ds_triton_client.TokenLogprob``). OpenAI's APIs ask for them differently:

* completions: ``logprobs: N`` (0..20 here) → ``{"tokens", "token_logprobs",
  "top_logprobs", "text_offset"}``, ``top_logprobs`` a dict of the N most likely
  tokens' texts per position; with ``echo`` the prompt's tokens come first
  (from the model's ``prompt_logprobs``; the first prompt token has none);
* chat: ``logprobs: true`` and ``top_logprobs: N`` → ``{"content": [{"token",
  "logprob", "bytes", "top_logprobs": [...]}], "refusal": null}``.

Each streamed chunk carries the entries of the tokens it delivers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ds_triton_client import Candidate, TokenLogprob


def _top(entry: TokenLogprob, count: int) -> list[Candidate]:
    return [c for c in entry.listed if c.rank <= count]


def completion_logprobs(
    entries: Sequence[TokenLogprob | None], count: int, offset: int = 0
) -> dict[str, Any]:
    """The completions ``logprobs`` object; ``offset`` is where the first token's text starts."""
    tokens: list[str] = []
    token_logprobs: list[float | None] = []
    top_logprobs: list[dict[str, float] | None] = []
    text_offset: list[int] = []
    for entry in entries:
        if entry is None:  # the first prompt token: nothing precedes it
            continue
        tokens.append(entry.token.text)
        token_logprobs.append(entry.token.logprob)
        top_logprobs.append({c.text: c.logprob for c in _top(entry, count)})
        text_offset.append(offset)
        offset += len(entry.token.text)
    return {"tokens": tokens, "token_logprobs": token_logprobs, "top_logprobs": top_logprobs,
            "text_offset": text_offset}  # fmt: skip


def echoed_completion_logprobs(
    prompt: str, prompt_entries: Sequence[TokenLogprob | None], generated: Sequence[TokenLogprob], count: int
) -> dict[str, Any]:
    """``echo`` with ``logprobs``: the prompt's tokens first, then the generated ones.

    The first prompt token has no log-probability (nothing precedes it) and the model
    does not return its text, so its text is what the prompt holds before the others'.
    """
    head = completion_logprobs(prompt_entries, count)
    if prompt_entries and prompt_entries[0] is None:
        rest = "".join(head["tokens"])
        first = prompt[: len(prompt) - len(rest)] if prompt.endswith(rest) else ""
        head["tokens"].insert(0, first)
        head["token_logprobs"].insert(0, None)
        head["top_logprobs"].insert(0, None)
        head["text_offset"] = [0] + [offset + len(first) for offset in head["text_offset"]]
    tail = completion_logprobs(generated, count, offset=len(prompt))
    return {key: head[key] + tail[key] for key in head}


def _chat_token(candidate: Candidate) -> dict[str, Any]:
    return {
        "token": candidate.text,
        "logprob": candidate.logprob,
        "bytes": list(candidate.text.encode("utf-8")),
    }


def chat_logprobs(entries: Sequence[TokenLogprob], count: int) -> dict[str, Any]:
    """The chat ``logprobs`` object of ``entries``."""
    content = [
        {**_chat_token(e.token), "top_logprobs": [_chat_token(c) for c in _top(e, count)]} for e in entries
    ]
    return {"content": content, "refusal": None}
