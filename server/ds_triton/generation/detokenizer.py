"""Incremental detokenisation: the new text each token adds, at constant cost per token.

Decoding the whole sequence after every token costs O(length) per token. Instead
a short window of the last tokens is decoded: the text of the window up to what
was already sent versus the text of the whole window, so one decode per token
(the first text is the previous call's second, kept). The window starts a few
tokens before the new ones, so tokenisers that decide spacing from neighbours
(WordPiece ``##`` pieces, SentencePiece's leading ``▁``) produce the right
characters, and text that ends in an incomplete UTF-8 sequence (U+FFFD) is held
back until the next token completes it. When the sequence ends, ``flush``
releases what is still held back, replacement characters included, so the
streamed text always adds up to HF ``decode`` of the same tokens.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

# Already-sent tokens kept at the start of the window as context for spacing.
CONTEXT_TOKENS = 2
# The window slides (back to CONTEXT_TOKENS) when it grows past this many tokens. A decode
# costs about the same for each token in the window, so the window stays short: with these
# values each new token costs one decode of 3 to 6 tokens.
WINDOW_TOKENS = 5
REPLACEMENT_CHAR = "\ufffd"


class IncrementalDetokenizer:
    """Turns a growing list of token ids into text deltas."""

    def __init__(
        self,
        tokenizer: Any,
        prompt_ids: Sequence[int],
        decode: Callable[[Sequence[int]], str] | None = None,
    ) -> None:
        """``decode`` turns ids into text (default: ``fast_decoder``, skipping special tokens)."""
        self._decode = decode or fast_decoder(tokenizer)
        # Generated text starts after the prompt's own tokens.
        self._ids: list[int] = list(prompt_ids[-CONTEXT_TOKENS:])
        self._sent = len(self._ids)  # the window's text up to here was sent
        self._sent_text: str | None = None  # that text, once decoded

    def add(self, token_id: int) -> str:
        """Append ``token_id`` and return the text it completes (may be empty)."""
        self._ids.append(token_id)
        sent_text = self._sent_window_text()
        text = self._decode(self._ids)
        if len(text) <= len(sent_text) or text.endswith(REPLACEMENT_CHAR):
            return ""
        self._sent, self._sent_text = len(self._ids), text
        if len(self._ids) > WINDOW_TOKENS:  # slide, so the cost per token stays constant
            del self._ids[: len(self._ids) - CONTEXT_TOKENS]
            self._sent, self._sent_text = CONTEXT_TOKENS, None
        return text[len(sent_text) :]

    def flush(self) -> str:
        """The text still held back (an incomplete character decodes as U+FFFD)."""
        sent_text = self._sent_window_text()
        text = self._decode(self._ids)
        self._sent, self._sent_text = len(self._ids), text
        return text[len(sent_text) :] if len(text) > len(sent_text) else ""

    def _sent_window_text(self) -> str:
        if self._sent_text is None:
            self._sent_text = self._decode(self._ids[: self._sent])
        return self._sent_text


def fast_decoder(tokenizer: Any, skip_special_tokens: bool = True) -> Callable[[Sequence[int]], str]:
    """``ids -> text`` as HF ``decode`` (no clean-up of spaces) computes it, as cheaply as possible.

    For a fast tokenizer that does not change how it decodes, that is a call of the
    Rust tokenizer itself: the same text without HF's per-call Python overhead,
    which at 16 streams is paid 16 times a step.
    """
    backend = getattr(tokenizer, "_tokenizer", None)
    if backend is not None and _decodes_like_its_backend(tokenizer):
        return lambda ids: str(backend.decode(list(ids), skip_special_tokens=skip_special_tokens))
    options = {"skip_special_tokens": skip_special_tokens, "clean_up_tokenization_spaces": False}
    return lambda ids: str(tokenizer.decode(list(ids), **options))


def _decodes_like_its_backend(tokenizer: Any) -> bool:
    try:
        from transformers.tokenization_utils_tokenizers import TokenizersBackend
    except ImportError:  # another transformers layout: keep to the public API
        return False
    return isinstance(tokenizer, TokenizersBackend) and type(tokenizer)._decode is TokenizersBackend._decode
