"""Merge the requests of one ``execute()`` into one tokenised batch and split results back.

The valid requests' texts are tokenised together and embedded in the few
forward passes the encoder plans for them (by length and token budget). Each
request either fails alone (its own error, found before any forward pass) or
gets exactly its rows back; a forward-pass failure fails only the requests of
that batch, never the server.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, cast

import numpy as np

from ds_triton.embedding.encoder import TokenizedBatch
from ds_triton.embedding.request import EmbeddingRequest
from ds_triton.errors import InvalidInputError, ModelServingError


@dataclass(frozen=True)
class EmbeddingOutput:
    """One request's rows: embeddings (rows, dim) float32, truncated (rows,) bool."""

    embeddings: np.ndarray
    truncated: np.ndarray


class Encoder(Protocol):
    """What ``run_batch`` needs of an encoder (``TextEncoder`` in production)."""

    @property
    def max_length(self) -> int: ...

    def tokenize(self, texts: Sequence[str]) -> TokenizedBatch: ...

    def embed(self, batch: TokenizedBatch) -> np.ndarray: ...


Outcome = EmbeddingOutput | ModelServingError


def run_batch(
    encoder: Encoder, requests: Sequence[EmbeddingRequest | ModelServingError], truncate: bool = True
) -> list[Outcome]:
    """Embed every valid request's texts together; outcomes in request order.

    With ``truncate`` off, a request holding a text over ``max_length`` tokens is
    rejected after tokenising, before any forward pass, and its rows are dropped.
    """
    outcomes: list[Outcome | None] = [r if isinstance(r, ModelServingError) else None for r in requests]
    valid = [(i, r) for i, r in enumerate(requests) if isinstance(r, EmbeddingRequest)]
    if not valid:
        return [o for o in outcomes if o is not None]
    tokens = encoder.tokenize([text for _, request in valid for text in request.texts])
    bounds = list(itertools.pairwise(np.cumsum([0, *(len(r.texts) for _, r in valid)]).tolist()))
    if len(tokens) != bounds[-1][1]:
        raise RuntimeError(f"encoder tokenised {len(tokens)} rows for {bounds[-1][1]} texts")
    kept: list[tuple[int, int, int]] = []  # (request index, start, end) in ``tokens``
    for (index, _), (start, end) in zip(valid, bounds, strict=True):
        overlong = np.flatnonzero(tokens.truncated[start:end])
        if not truncate and overlong.size:
            outcomes[index] = InvalidInputError(
                f"input 'text' row {int(overlong[0])} is longer than the model's max_length of "
                f"{encoder.max_length} tokens (truncation is off for this model)"
            )
        else:
            kept.append((index, start, end))
    rows = [row for _, start, end in kept for row in range(start, end)]
    if rows:
        embeddings = encoder.embed(tokens.select(rows) if len(rows) < len(tokens) else tokens)
        if embeddings.shape[0] != len(rows):
            raise RuntimeError(f"encoder returned {embeddings.shape[0]} rows for {len(rows)} texts")
        offset = 0
        for index, start, end in kept:
            size = end - start
            outcomes[index] = EmbeddingOutput(embeddings[offset : offset + size], tokens.truncated[start:end])
            offset += size
    return cast(list[Outcome], outcomes)  # every request has its outcome by now
