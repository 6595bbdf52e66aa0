"""Serve-time GPU resolution: gpus "all" models re-rendered per GPU; no GPU changes nothing."""

from __future__ import annotations

from pathlib import Path

from ds_triton.repository.machine import Machine
from ds_triton.repository.scaffold import add_model
from ds_triton.repository.schema import read_config
from ds_triton.repository.writer import resolve_gpus_for_serving
from ds_triton.spec import ModelSpec
from tests.repository.conftest import MINILM

NO_GPU = Machine(cores=4)


def add(repo: Path, name: str, **deployment: object) -> None:
    spec = {"name": name, "task": "embedding", "checkpoint": MINILM, "deployment": deployment}
    add_model(repo, ModelSpec.from_dict(spec), NO_GPU)


def snapshot(repo: Path) -> dict[str, tuple[str, int]]:
    return {p.parent.name: (p.read_text(), p.stat().st_mtime_ns) for p in repo.glob("*/config.pbtxt")}


def gpus_of(repo: Path, name: str) -> list[list[int]]:
    return [list(g.gpus) for g in read_config(repo / name / "config.pbtxt").instance_group]


def test_no_gpu_changes_nothing(tmp_path: Path) -> None:
    add(tmp_path, "all_gpus", device="gpu", gpus="all")
    add(tmp_path, "cpu", device="cpu")
    before = snapshot(tmp_path)
    assert resolve_gpus_for_serving(tmp_path, ()) == []
    assert snapshot(tmp_path) == before


def test_gpus_all_models_get_a_group_per_gpu(tmp_path: Path) -> None:
    add(tmp_path, "all_gpus", device="gpu", gpus="all", instances_per_device=2)
    add(tmp_path, "pinned", device="gpu", gpus=[1])
    add(tmp_path, "cpu", device="cpu")
    (tmp_path / "foreign").mkdir()  # no model.json: not ours, left alone
    before = snapshot(tmp_path)
    assert resolve_gpus_for_serving(tmp_path, (0, 1, 2, 3)) == ["all_gpus"]
    assert gpus_of(tmp_path, "all_gpus") == [[0], [1], [2], [3]]
    after = snapshot(tmp_path)
    assert {k: v for k, v in after.items() if k != "all_gpus"} == {
        k: v for k, v in before.items() if k != "all_gpus"
    }
    assert resolve_gpus_for_serving(tmp_path, (0, 1, 2, 3)) == []  # idempotent
    assert resolve_gpus_for_serving(tmp_path, (0, 1)) == ["all_gpus"]
    assert gpus_of(tmp_path, "all_gpus") == [[0], [1]]
    assert gpus_of(tmp_path, "pinned") == [[1]]
