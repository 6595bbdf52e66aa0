"""Stop strings over streamed text, without ever sending part of a stop string.

Text that could be the start of a stop string is held back until the next
delta shows whether it is one; at the end of the sequence whatever is held
is released. A match ends the sequence and the stop string is not returned
(vLLM's default), unless ``include_stop_str_in_output``: then the text runs to
the end of the stop string and nothing needs holding back.
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

    def __init__(self, stops: Sequence[str], include_stop: bool = False) -> None:
        self._stops = tuple(stops)
        self._include = include_stop
        self._longest = max((len(s) for s in self._stops), default=0)
        self._pending = ""  # held back: it may be the start of a stop string
        self._tail = ""  # released, kept to find a stop string that began in it (include_stop)

    def feed(self, delta: str) -> StopResult:
        """Add ``delta``; return the text that can be released."""
        if not self._stops:
            return StopResult(delta, False)
        if self._include:
            return self._feed_including(delta)
        text = self._pending + delta
        match = self._first_match(text)
        if match is not None:
            self._pending = ""
            return StopResult(text[: match[0]], True)
        held = self._held_suffix(text)
        self._pending = text[len(text) - held :] if held else ""
        return StopResult(text[: len(text) - held], False)

    def _feed_including(self, delta: str) -> StopResult:
        """The stop string stays in the output, so nothing is held back."""
        window = self._tail + delta
        match = self._first_match(window)
        if match is not None:
            return StopResult(window[len(self._tail) : match[1]], True)
        self._tail = window[max(0, len(window) - (self._longest - 1)) :]
        return StopResult(delta, False)

    def _first_match(self, text: str) -> tuple[int, int] | None:
        """(start, end) of the earliest stop string in ``text`` (the longest one there)."""
        hits = [(i, -len(stop)) for i, stop in ((text.find(stop), stop) for stop in self._stops) if i >= 0]
        if not hits:
            return None
        start, minus_length = min(hits)
        return start, start - minus_length

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
