"""Fixtures for server-level tests of the shipped models."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ds_triton.server_process.tritonserver import TritonServer
from ds_triton.spec import ModelSpec
from tests.conftest import MODEL_REPOSITORY, StartServer
from tests.repository.tiny_checkpoints import make_byte_level_qwen2
from tests.server.generation_client import BPE_MODEL, MODEL, PROCESSED_MODEL

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


@pytest.fixture(scope="session")
def tight_server(
    start_server: StartServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TritonServer]:
    """Generation models other than the shipped one, on one server (one start for all):

    - ``text_generation`` with one running sequence, no queue and short prompts, so
      limits are easy to reach;
    - ``BPE_MODEL``: a tiny Qwen2 with a byte-level BPE tokenizer trained at test time;
    - ``PROCESSED_MODEL``: the shipped model reporting ``processed_logprobs``. Its
      ``model.py`` is ``fault_injecting_model.py``: forward passes raise when a prompt
      asks for it (test_generation_faults.py), and never otherwise. One model serves
      both, so the session starts no extra model.
    """
    repository = tmp_path_factory.mktemp("tight-repo")
    source = MODEL_REPOSITORY / MODEL
    # Checkpoints are inside the repository (copied or built there): a model reads nothing outside it.
    for name in (MODEL, PROCESSED_MODEL):
        shutil.copytree(source, repository / name, ignore=shutil.ignore_patterns("__pycache__"))
    faulty_code = Path(__file__).with_name("fault_injecting_model.py")
    shutil.copy(faulty_code, repository / PROCESSED_MODEL / "1" / "model.py")
    without_weights = shutil.ignore_patterns("checkpoint", "__pycache__")
    shutil.copytree(source, repository / BPE_MODEL, ignore=without_weights)
    spec = json.loads((source / "1" / "model.json").read_text())
    tight = {**spec}
    tight["generation"] = {
        **spec["generation"],
        "max_concurrent_sequences": 1,
        "max_queued_requests": 0,
        "max_prompt_tokens": 16,
        "max_tokens_limit": 1000,
    }
    (repository / MODEL / "1" / "model.json").write_text(json.dumps(tight, indent=2))
    make_byte_level_qwen2(repository / BPE_MODEL / "1" / "checkpoint")
    bpe = {**spec, "name": BPE_MODEL, "checkpoint": "checkpoint"}
    bpe["generation"] = {**spec["generation"], "max_prompt_tokens": 64, "max_tokens_limit": 128}
    (repository / BPE_MODEL / "1" / "model.json").write_text(json.dumps(bpe, indent=2))
    processed = {**spec, "name": PROCESSED_MODEL}
    processed["generation"] = {**spec["generation"], "logprobs_mode": "processed_logprobs"}
    (repository / PROCESSED_MODEL / "1" / "model.json").write_text(json.dumps(processed, indent=2))
    for name in (BPE_MODEL, PROCESSED_MODEL):
        (repository / name / "config.pbtxt").write_text(
            (source / "config.pbtxt").read_text().replace(f'name: "{MODEL}"', f'name: "{name}"')
        )
    with start_server(repository=repository, models=[MODEL, BPE_MODEL, PROCESSED_MODEL]) as server:
        yield server
