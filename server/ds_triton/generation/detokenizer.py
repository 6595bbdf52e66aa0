"""Incremental detokenisation: the new text each token adds, at constant cost per token.

Decoding the whole sequence after every token costs O(length) per token. Instead
only a short window is decoded: the text of ``tokens[prefix:read]`` versus that
of ``tokens[prefix:]``. The window keeps the token before the new ones, so
tokenisers that decide spacing from neighbours (WordPiece ``##`` pieces,
SentencePiece's leading ``▁``) produce the right characters, and text that ends
in an incomplete UTF-8 sequence (U+FFFD) is held back until the next token
completes it. When the sequence ends, ``flush`` releases what is still held
back, replacement characters included, so the streamed text always adds up to
HF ``decode`` of the same tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# How many already-decoded tokens stay in the window as context for spacing.
CONTEXT_TOKENS = 5
REPLACEMENT_CHAR = "\ufffd"


class IncrementalDetokenizer:
    """Turns a growing list of token ids into text deltas."""

    def __init__(self, tokenizer: Any, prompt_ids: Sequence[int]) -> None:
        self._tokenizer = tokenizer
        self._ids: list[int] = list(prompt_ids[-CONTEXT_TOKENS:])
        # Generated text starts after the prompt's own tokens.
        self._prefix = 0
        self._read = len(self._ids)

    def add(self, token_id: int) -> str:
        """Append ``token_id`` and return the text it completes (may be empty)."""
        self._ids.append(token_id)
        prefix_text = self._decode(self._ids[self._prefix : self._read])
        new_text = self._decode(self._ids[self._prefix :])
        if len(new_text) <= len(prefix_text) or new_text.endswith(REPLACEMENT_CHAR):
            return ""
        delta = new_text[len(prefix_text) :]
        # Slide the window so its cost stays constant.
        self._prefix = self._read
        self._read = len(self._ids)
        if self._prefix > CONTEXT_TOKENS:
            drop = self._prefix - CONTEXT_TOKENS
            del self._ids[:drop]
            self._prefix -= drop
            self._read -= drop
        return delta

    def flush(self) -> str:
        """The text still held back (an incomplete character decodes as U+FFFD)."""
        prefix_text = self._decode(self._ids[self._prefix : self._read])
        new_text = self._decode(self._ids[self._prefix :])
        self._read = len(self._ids)
        return new_text[len(prefix_text) :] if len(new_text) > len(prefix_text) else ""

    def _decode(self, ids: Sequence[int]) -> str:
        text: str = self._tokenizer.decode(
            list(ids), skip_special_tokens=True, clean_up_tokenization_spaces=False
        )
        return text
