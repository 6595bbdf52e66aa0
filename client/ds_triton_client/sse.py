"""Incremental Server-Sent Events parser for Triton's ``generate_stream`` (no I/O).

Bytes arrive in arbitrary chunks; ``feed`` returns every event completed so far.
Only ``data:`` fields matter here (Triton sends one JSON object per event).
"""

from __future__ import annotations

#: Largest pending (unterminated) event accepted, so a broken server cannot grow memory without bound.
MAX_EVENT_BYTES = 8 * 1024 * 1024


class SSEParser:
    """Splits a byte stream into the ``data`` payloads of its events."""

    def __init__(self, max_event_bytes: int = MAX_EVENT_BYTES) -> None:
        self._buffer = b""
        self._data: list[str] = []
        self._max = max_event_bytes

    def feed(self, chunk: bytes) -> list[str]:
        """Add bytes; return the data of each event they complete, in order.

        Raises:
            ValueError: One event grew beyond ``max_event_bytes``.
        """
        self._buffer += chunk
        events: list[str] = []
        while True:
            newline = self._buffer.find(b"\n")
            if newline < 0:
                break
            line = self._buffer[:newline].rstrip(b"\r")
            self._buffer = self._buffer[newline + 1 :]
            event = self._line(line.decode("utf-8"))
            if event is not None:
                events.append(event)
        if len(self._buffer) > self._max:
            raise ValueError(f"server-sent event larger than {self._max} bytes")
        return events

    def close(self) -> list[str]:
        """End of stream: an event without its final blank line still counts."""
        events = self.feed(b"\n") if self._buffer else []
        if self._data:
            events.append("\n".join(self._data))
            self._data = []
        return events

    def _line(self, line: str) -> str | None:
        if not line:
            if not self._data:
                return None
            data, self._data = "\n".join(self._data), []
            return data
        if line.startswith(":"):
            return None  # comment / keep-alive
        name, _, value = line.partition(":")
        if name == "data":
            self._data.append(value[1:] if value.startswith(" ") else value)
        return None
