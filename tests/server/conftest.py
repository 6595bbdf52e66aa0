"""Fixtures for server-level tests of the shipped models."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ds_triton.spec import ModelSpec

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def reference_embeddings() -> Callable[[Sequence[str]], np.ndarray]:
    """sentence-transformers' embeddings of the shipped checkpoint, computed in this process."""
    from sentence_transformers import SentenceTransformer

    version_dir = ROOT / "model_repository" / "text_embedding" / "1"
    checkpoint = ModelSpec.load(version_dir).resolve_checkpoint(version_dir)
    model: Any = SentenceTransformer(str(checkpoint), device="cpu")

    def encode(texts: Sequence[str]) -> np.ndarray:
        return np.asarray(model.encode(list(texts), convert_to_numpy=True), dtype=np.float32)

    return encode
