"""Optional API keys: ``Authorization: Bearer <key>``, compared in constant time.

Keys come from a file (one per line, ``#`` comments) or an environment variable
(comma-separated), never from the command line, where any local user could read
them. Only SHA-256 digests are kept, and a presented key is compared with every
stored digest through ``hmac.compare_digest`` without stopping at a match, so
neither the position of the first differing byte nor which key matched shows
in the response time.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from pathlib import Path

MIN_KEY_LENGTH = 16


@dataclass(frozen=True)
class ApiKeys:
    """The accepted keys' digests; empty means the gateway asks for no key."""

    digests: tuple[bytes, ...] = ()

    @property
    def required(self) -> bool:
        return bool(self.digests)

    @classmethod
    def of(cls, keys: list[str]) -> ApiKeys:
        for key in keys:
            if len(key) < MIN_KEY_LENGTH or any(c.isspace() for c in key) or not key.isprintable():
                raise ValueError(
                    f"API keys must be at least {MIN_KEY_LENGTH} printable characters without spaces "
                    f"(one is {len(key)} characters)"
                )
        return cls(tuple(_digest(key) for key in keys))

    def accepts(self, authorization: str | None) -> bool:
        """Whether an ``Authorization`` header value carries one of the keys."""
        scheme, _, presented = (authorization or "").partition(" ")
        digest = _digest(presented.strip())
        matched = False
        for stored in self.digests:
            matched |= hmac.compare_digest(stored, digest)
        return matched and scheme.lower() == "bearer"


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", errors="surrogatepass")).digest()


def load_api_keys(path: Path | str | None, env_value: str | None) -> ApiKeys:
    """Keys from ``path`` (one per line) and ``env_value`` (comma-separated).

    Raises:
        ValueError: The file cannot be read, holds no key, or a key is too short.
    """
    keys: list[str] = []
    if path:
        try:
            lines = Path(path).read_text().splitlines()
        except OSError as exc:
            raise ValueError(f"API key file {path}: {exc.strerror or exc}") from None
        keys += [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
        if not keys:
            raise ValueError(f"API key file {path} holds no key")
    if env_value:
        keys += [key.strip() for key in env_value.split(",") if key.strip()]
    return ApiKeys.of(keys)
