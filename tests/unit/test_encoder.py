"""TextEncoder on the real MiniLM checkpoint, in-process (no server)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ds_triton.devices import Placement
from ds_triton.embedding.encoder import TextEncoder
from ds_triton.loading import LoadedModel, load_model
from ds_triton.spec import EmbeddingSpec, ModelSpec

VERSION_DIR = Path(__file__).resolve().parents[2] / "model_repository" / "text_embedding" / "1"
MIXED = ["short", "a medium sentence of about ten words in total here", "long " * 150, "x", "tokens " * 400]


@pytest.fixture(scope="module")
def loaded() -> LoadedModel:
    return load_model(ModelSpec.load(VERSION_DIR), VERSION_DIR, Placement("cpu", 1))


def test_length_bucketing_changes_no_result(loaded: LoadedModel) -> None:
    bucketed = TextEncoder(loaded, EmbeddingSpec(length_bucketing=True)).encode(MIXED)
    single = TextEncoder(loaded, EmbeddingSpec(length_bucketing=False)).encode(MIXED)
    assert np.abs(bucketed.embeddings - single.embeddings).max() <= 1e-5
    assert bucketed.truncated.tolist() == single.truncated.tolist() == [False, False, False, False, True]


def test_matches_sentence_transformers(loaded: LoadedModel) -> None:
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(loaded.checkpoint), device="cpu").encode(MIXED)
    ours = TextEncoder(loaded, EmbeddingSpec()).encode(MIXED).embeddings
    assert ours.shape == (5, 384)
    assert np.abs(ours - reference).max() <= 1e-5
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def test_max_length_comes_from_sentence_transformers_config(loaded: LoadedModel) -> None:
    assert TextEncoder(loaded, EmbeddingSpec()).max_length == 256
    assert TextEncoder(loaded, EmbeddingSpec(max_length=16)).max_length == 16


@pytest.mark.parametrize("pooling", ["cls", "last_token"])
def test_other_poolings_give_unit_vectors(loaded: LoadedModel, pooling: str) -> None:
    result = TextEncoder(loaded, EmbeddingSpec(pooling=pooling)).encode(["one", "two words here"])  # type: ignore[arg-type]
    assert np.allclose(np.linalg.norm(result.embeddings, axis=1), 1.0, atol=1e-5)


def test_tokenizer_inputs_the_model_does_not_take_are_dropped(loaded: LoadedModel) -> None:
    """MiniLM's BERT tokenizer returns token_type_ids; DistilBERT's forward has no such argument."""
    import dataclasses

    from transformers import DistilBertConfig, DistilBertModel

    config = DistilBertConfig(
        vocab_size=loaded.tokenizer.vocab_size, dim=32, n_layers=1, n_heads=2, hidden_dim=64
    )
    module = DistilBertModel(config).eval()
    distil = dataclasses.replace(loaded, engine=module, module=module, config=config)
    result = TextEncoder(distil, EmbeddingSpec(max_length=32)).encode(["two texts", "of different length"])
    assert result.embeddings.shape == (2, 32)
