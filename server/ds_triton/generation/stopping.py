"""Stop strings over streamed text, without ever sending part of a stop string.

Text that could be the start of a stop string is held back until the next
delta shows whether it is one; at the end of the sequence whatever is held
is released. A match ends the sequence and the stop string is not returned
(vLLM's default).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class StopResult:
    """Text that is safe to send now, and whether a stop string was hit."""

    text: str
    stopped: bool


class StopStringMatcher:
    """Tracks one sequence's generated text against its stop strings."""

    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = tuple(stops)
        self._longest = max((len(s) for s in self._stops), default=0)
        self._pending = ""

    def feed(self, delta: str) -> StopResult:
        """Add ``delta``; return the text that can be released."""
        if not self._stops:
            return StopResult(delta, False)
        text = self._pending + delta
        hits = [i for i in (text.find(s) for s in self._stops) if i >= 0]
        if hits:
            self._pending = ""
            return StopResult(text[: min(hits)], True)
        held = self._held_suffix(text)
        self._pending = text[len(text) - held :] if held else ""
        return StopResult(text[: len(text) - held], False)

    def flush(self) -> str:
        """Release held-back text (the sequence ended for another reason)."""
        text, self._pending = self._pending, ""
        return text

    def _held_suffix(self, text: str) -> int:
        """Length of the longest suffix of ``text`` that starts some stop string."""
        for length in range(min(len(text), self._longest - 1), 0, -1):
            suffix = text[-length:]
            if any(stop.startswith(suffix) for stop in self._stops):
                return length
        return 0
