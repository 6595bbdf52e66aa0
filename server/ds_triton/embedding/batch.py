"""Merge the requests of one ``execute()`` into one forward pass and split results back.

Each request either fails alone (its own error) or gets exactly its rows back;
a forward-pass failure fails only the requests of that batch, never the server.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ds_triton.embedding.encoder import EncodeResult
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

    def encode(self, texts: Sequence[str]) -> EncodeResult: ...


Outcome = EmbeddingOutput | ModelServingError


def run_batch(
    encoder: Encoder, requests: Sequence[EmbeddingRequest | ModelServingError], truncate: bool = True
) -> list[Outcome]:
    """Embed every valid request in one ``encoder.encode`` call, in request order."""
    valid = [r for r in requests if isinstance(r, EmbeddingRequest)]
    if not valid:
        return [r for r in requests if isinstance(r, ModelServingError)]
    texts = [text for request in valid for text in request.texts]
    result = encoder.encode(texts)
    if result.embeddings.shape[0] != len(texts) or result.truncated.shape[0] != len(texts):
        raise RuntimeError(f"encoder returned {result.embeddings.shape[0]} rows for {len(texts)} texts")
    split = iter(_split(result.embeddings, result.truncated, [len(r.texts) for r in valid]))
    outcomes: list[Outcome] = []
    for request in requests:
        if not isinstance(request, EmbeddingRequest):
            outcomes.append(request)
            continue
        output = next(split)
        if not truncate and output.truncated.any():
            row = int(np.flatnonzero(output.truncated)[0])
            outcomes.append(
                InvalidInputError(
                    f"input 'text' row {row} is longer than the model's max_length of "
                    f"{encoder.max_length} tokens (truncation is off for this model)"
                )
            )
        else:
            outcomes.append(output)
    return outcomes


def _split(embeddings: np.ndarray, truncated: np.ndarray, sizes: list[int]) -> list[EmbeddingOutput]:
    bounds = np.cumsum([0, *sizes])
    return [
        EmbeddingOutput(embeddings[start:end], truncated[start:end])
        for start, end in itertools.pairwise(bounds)
    ]
