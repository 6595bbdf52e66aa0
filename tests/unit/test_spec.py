"""ModelSpec: loading, validation messages that name the key, round trip."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ds_triton.errors import SpecError
from ds_triton.spec import ModelSpec

ROOT = Path(__file__).resolve().parents[2]


def minimal(**overrides: Any) -> dict[str, Any]:
    return {"name": "m", "task": "embedding", "checkpoint": "/ckpt", **overrides}


def test_shipped_embedding_spec_loads_and_resolves_packaged_weights() -> None:
    version_dir = ROOT / "model_repository" / "text_embedding" / "1"
    spec = ModelSpec.load(version_dir)
    assert spec.task == "embedding"
    assert (spec.resolve_checkpoint(version_dir) / "model.safetensors").is_file()


def test_round_trip_through_json() -> None:
    spec = ModelSpec.from_dict(minimal(batching={"max_batch_size": 8, "preferred_batch_sizes": [4, 8]}))
    assert ModelSpec.from_dict(json.loads(spec.dumps())) == spec


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (minimal(task="translation"), "task must be one of"),
        (minimal(dtype="int8"), "dtype must be one of"),
        (minimal(colour="red"), "unknown key(s): colour"),
        (minimal(batching={"max_batch_size": 0}), "max_batch_size must be >= 1"),
        (minimal(batching={"max_batch_size": 8, "preferred_batch_sizes": [16]}), "preferred_batch_sizes"),
        (minimal(batching={"max_batch": 8}), "unknown key(s) in 'batching': max_batch"),
        (minimal(deployment={"instances_per_device": 0}), "instances_per_device"),
        (minimal(deployment={"gpus": [-1]}), "deployment.gpus"),
        (minimal(embedding={"pooling": "max"}), "embedding.pooling"),
        (minimal(embedding={"max_length": 512, "max_tokens_per_forward": 256}), "max_tokens_per_forward"),
        (minimal(generation={}), "takes no 'generation' options"),
        (minimal(name="bad name!"), "name must be"),
        (minimal(checkpoint=""), "checkpoint must name"),
    ],
)
def test_invalid_specs_name_the_problem(data: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ModelSpec.from_dict(data)


def test_relative_checkpoint_resolves_against_version_folder(tmp_path: Path) -> None:
    spec = ModelSpec.from_dict(minimal(checkpoint="weights"))
    assert spec.resolve_checkpoint(tmp_path) == (tmp_path / "weights").resolve()


def test_missing_package_is_reported(tmp_path: Path) -> None:
    spec = ModelSpec.from_dict(minimal(checkpoint="package:no_such_package_xyz/model"))
    with pytest.raises(SpecError, match="no_such_package_xyz"):
        spec.resolve_checkpoint(tmp_path)


def test_load_reports_invalid_json(tmp_path: Path) -> None:
    (tmp_path / "model.json").write_text("{not json")
    with pytest.raises(SpecError, match="invalid JSON"):
        ModelSpec.load(tmp_path)
