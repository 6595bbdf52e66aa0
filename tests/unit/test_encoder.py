"""TextEncoder on the real MiniLM checkpoint, in-process (no server)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ds_triton.devices import Placement
from ds_triton.embedding.encoder import TextEncoder
from ds_triton.errors import ModelLoadError
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


def reference_pooling(loaded: LoadedModel, texts: list[str], pooling: str, max_length: int) -> np.ndarray:
    """Each text alone through the plain Hugging Face module (no padding), pooled, L2-normalised."""
    import torch

    rows = []
    for text in texts:
        inputs = loaded.tokenizer(text, truncation=True, max_length=max_length, return_tensors="pt")
        with torch.inference_mode():
            hidden = loaded.module(**inputs).last_hidden_state[0]
        vector = {"cls": hidden[0], "last_token": hidden[-1], "mean": hidden.mean(dim=0)}[pooling]
        rows.append(torch.nn.functional.normalize(vector, dim=0).numpy())
    return np.stack(rows)


@pytest.mark.parametrize("pooling", ["cls", "last_token", "mean"])
@pytest.mark.parametrize("bucketing", [True, False])
def test_poolings_match_a_reference_pooling(loaded: LoadedModel, pooling: str, bucketing: bool) -> None:
    """Texts of different lengths share forwards, so padding must never reach the pooled vector."""
    options = EmbeddingSpec(pooling=pooling, length_bucketing=bucketing)  # type: ignore[arg-type]
    encoder = TextEncoder(loaded, options)
    ours = encoder.encode(MIXED).embeddings
    assert np.abs(ours - reference_pooling(loaded, MIXED, pooling, encoder.max_length)).max() <= 1e-5


class EngineSpy:
    """Wraps the engine and records the inputs of every forward pass."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.calls: list[dict[str, np.ndarray]] = []

    def __call__(self, **inputs: Any) -> Any:
        self.calls.append({name: value.numpy().copy() for name, value in inputs.items()})
        return self.engine(**inputs)


class TokenizerSpy:
    """Wraps the tokenizer and counts calls (attributes pass through)."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.calls: list[dict[str, Any]] = []

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append(kwargs)
        return self.tokenizer(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.tokenizer, name)


def test_one_tokenizer_pass_and_each_forward_padded_to_its_own_rows(loaded: LoadedModel) -> None:
    texts = ["tokens " * n for n in (3, 200, 5, 180, 4, 220)] * 4
    engine, tokenizer = EngineSpy(loaded.engine), TokenizerSpy(loaded.tokenizer)
    spied = dataclasses.replace(loaded, engine=engine, tokenizer=tokenizer)
    result = TextEncoder(spied, EmbeddingSpec(max_tokens_per_forward=1024)).encode(texts)
    assert len(tokenizer.calls) == 1 and not tokenizer.calls[0].get("padding")
    assert len(engine.calls) >= 3
    for call in engine.calls:
        rows, width = call["input_ids"].shape
        assert rows * width <= 1024
        assert call["attention_mask"][:, -1].any()  # padded to its own longest row, no further
    # Every forward's inputs are exactly what the tokenizer itself pads to for those rows.
    for call in engine.calls:
        mask = call["attention_mask"].astype(bool)
        row_ids = [ids[m].tolist() for ids, m in zip(call["input_ids"], mask, strict=True)]
        expected = loaded.tokenizer(
            [loaded.tokenizer.decode(ids[1:-1]) for ids in row_ids], padding=True, return_tensors="np"
        )
        for name in ("input_ids", "attention_mask", "token_type_ids"):
            assert (call[name] == expected[name]).all(), name
    single = TextEncoder(loaded, EmbeddingSpec(max_tokens_per_forward=16384)).encode(texts)
    assert np.abs(result.embeddings - single.embeddings).max() <= 1e-5


def test_a_python_tokenizer_reports_truncation_in_its_one_pass(loaded: LoadedModel) -> None:
    from transformers.models.bert import BertTokenizerLegacy

    python_tokenizer = TokenizerSpy(BertTokenizerLegacy(str(loaded.checkpoint / "vocab.txt")))
    assert not python_tokenizer.is_fast
    slow = TextEncoder(dataclasses.replace(loaded, tokenizer=python_tokenizer), EmbeddingSpec())
    result = slow.encode(MIXED)
    assert len(python_tokenizer.calls) == len(MIXED)  # one per text, none to re-check lengths
    assert result.truncated.tolist() == [False, False, False, False, True]
    fast = TextEncoder(loaded, EmbeddingSpec()).encode(MIXED)
    assert np.abs(result.embeddings - fast.embeddings).max() <= 1e-5


def test_a_token_budget_below_max_length_is_refused(loaded: LoadedModel) -> None:
    with pytest.raises(ModelLoadError, match="max_tokens_per_forward"):
        TextEncoder(loaded, EmbeddingSpec(max_tokens_per_forward=128))


def test_tokenizer_inputs_the_model_does_not_take_are_dropped(loaded: LoadedModel) -> None:
    """MiniLM's BERT tokenizer returns token_type_ids; DistilBERT's forward has no such argument."""
    from transformers import DistilBertConfig, DistilBertModel

    config = DistilBertConfig(
        vocab_size=loaded.tokenizer.vocab_size, dim=32, n_layers=1, n_heads=2, hidden_dim=64
    )
    module = DistilBertModel(config).eval()
    distil = dataclasses.replace(loaded, engine=module, module=module, config=config)
    result = TextEncoder(distil, EmbeddingSpec(max_length=32)).encode(["two texts", "of different length"])
    assert result.embeddings.shape == (2, 32)


def test_each_forward_writes_one_embed_record_to_the_step_timeline(
    loaded: LoadedModel, tmp_path: Path
) -> None:
    import json

    from ds_triton.profiling import StepTimeline

    timeline = StepTimeline(tmp_path / "steps.jsonl")
    encoder = TextEncoder(loaded, EmbeddingSpec(max_tokens_per_forward=256), timeline)
    encoder.encode(["tokens " * 100, "tokens " * 120, "short one"])
    timeline.close()
    records = [json.loads(line) for line in (tmp_path / "steps.jsonl").read_text().splitlines()]
    assert [r["phase"] for r in records] == ["embed"] * 3  # the budget fits one long text per forward
    assert sorted(r["rows"] for r in records) == [1, 1, 1]
    assert all(0 < r["tokens"] <= 256 and r["forward_ms"] > 0 for r in records)
