"""One embedding request as the model sees it, validated before any work is done."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ds_triton.errors import InvalidInputError


@dataclass(frozen=True)
class EmbeddingRequest:
    """The decoded texts of one Triton request (a request may carry several rows)."""

    texts: tuple[str, ...]

    @classmethod
    def from_raw(cls, rows: Sequence[object], input_name: str = "text") -> EmbeddingRequest:
        """Decode BYTES rows to text; raise ``InvalidInputError`` naming the bad row."""
        texts = []
        for index, raw in enumerate(rows):
            where = f"input '{input_name}' row {index}"
            if isinstance(raw, str):
                text = raw
            elif isinstance(raw, (bytes, bytearray)):
                try:
                    text = bytes(raw).decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise InvalidInputError(
                        f"{where} is not valid UTF-8 (byte {exc.start}: {raw[exc.start : exc.start + 1]!r})"
                    ) from None
            else:
                raise InvalidInputError(f"{where} must be a string, got {type(raw).__name__}")
            texts.append(text)
        request = cls(tuple(texts))
        request.validate(input_name)
        return request

    def validate(self, input_name: str = "text") -> None:
        if not self.texts:
            raise InvalidInputError(f"input '{input_name}' holds no text")
        for index, text in enumerate(self.texts):
            if not text.strip():
                raise InvalidInputError(f"input '{input_name}' row {index} is empty; send non-blank text")
