"""``POST /v1/embeddings``: texts through the embedding model, shortened and encoded as asked.

``dimensions`` smaller than the model's size keeps the first ``dimensions``
values and scales them back to unit length (Matryoshka truncation, as OpenAI's
``text-embedding-3`` models and sentence-transformers' ``truncate_dim`` do; the
full vector is already unit length). ``encoding_format: base64`` sends each
vector as the base64 of its little-endian float32 bytes, which is what the
OpenAI SDKs ask for by default and decode themselves.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

import numpy as np

from ds_triton_gateway.errors import invalid


def shorten(vectors: np.ndarray, dimensions: int | None) -> np.ndarray:
    """The vectors cut to ``dimensions`` and renormalised (unchanged when it is None or the full size).

    Raises:
        GatewayError: ``dimensions`` is below 1 or above the model's size.
    """
    size = vectors.shape[1]
    if dimensions is None or dimensions == size:
        return vectors
    if not 1 <= dimensions < size:
        raise invalid(f"'dimensions' must be between 1 and the model's size ({size}), got {dimensions}",
                      "dimensions")  # fmt: skip
    cut = vectors[:, :dimensions]
    norms = np.linalg.norm(cut, axis=1, keepdims=True)
    # As torch.nn.functional.normalize: a zero vector stays zero instead of becoming NaN.
    return (cut / np.maximum(norms, 1e-12)).astype(np.float32)


def embedding_items(vectors: np.ndarray, encoding_format: str) -> list[dict[str, Any]]:
    """The ``data`` list: one ``embedding`` object per input, in input order."""
    if encoding_format == "base64":
        rows: Sequence[Any] = [
            base64.b64encode(row.astype("<f4").tobytes()).decode("ascii") for row in vectors
        ]
    else:
        rows = list(
            vectors.astype(np.float32)
        )  # float32 rows: written as JSON floats that round-trip exactly
    return [{"object": "embedding", "index": i, "embedding": row} for i, row in enumerate(rows)]
