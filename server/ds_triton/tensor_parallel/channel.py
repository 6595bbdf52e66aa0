"""Length-prefixed pickled messages over a pipe, between the leader and one worker.

Only the leader and its own children ever hold these pipes, so unpickling is
not a trust boundary.
"""

from __future__ import annotations

import os
import pickle
import struct
from typing import Any

_HEADER = struct.Struct("!I")


class ChannelClosed(EOFError):
    """The other end of the pipe is closed (its process ended or closed it)."""


def send(fd: int, message: Any) -> None:
    """Write one message to ``fd`` (blocking)."""
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    _write_all(fd, _HEADER.pack(len(body)) + body)


def receive(fd: int) -> Any:
    """Read one message from ``fd``; ``ChannelClosed`` at end of file."""
    (size,) = _HEADER.unpack(_read_exactly(fd, _HEADER.size))
    return pickle.loads(_read_exactly(fd, size))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except BrokenPipeError as exc:
            raise ChannelClosed("the other end of the pipe is closed") from exc
        view = view[written:]


def _read_exactly(fd: int, size: int) -> bytes:
    chunks: list[bytes] = []
    while size:
        chunk = os.read(fd, size)
        if not chunk:
            raise ChannelClosed("the other end of the pipe is closed")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)
