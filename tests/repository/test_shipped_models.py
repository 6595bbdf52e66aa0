"""The shipped model folders are exactly what the generator makes of their model.json."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ds_triton.repository.checks import check_repository
from ds_triton.repository.layout import SHIM_SOURCE, ModelFolder, model_folders
from ds_triton.repository.machine import Machine
from ds_triton.repository.writer import render_folder
from tests.conftest import MODEL_REPOSITORY

SHIPPED = [f for f in model_folders(MODEL_REPOSITORY) if f.spec_path.is_file()]


def test_every_shipped_model_has_a_spec() -> None:
    assert [f.name for f in SHIPPED] == [f.name for f in model_folders(MODEL_REPOSITORY)]
    assert {"text_embedding", "text_generation"} <= {f.name for f in SHIPPED}


@pytest.mark.parametrize("folder", SHIPPED, ids=lambda f: f.name)
def test_checked_in_config_is_the_render_of_model_json(folder: ModelFolder) -> None:
    rendered = render_folder(folder, gpu_ids=())
    assert rendered.current == rendered.text, (
        f"{folder.config_path} differs from its render: run `ds-triton render --model {folder.name}`"
    )


@pytest.mark.parametrize("folder", SHIPPED, ids=lambda f: f.name)
def test_shim_is_the_shared_one(folder: ModelFolder) -> None:
    assert folder.shim_path.read_text() == SHIM_SOURCE


def test_shipped_repository_passes_check_here() -> None:
    assert [str(p) for p in check_repository(MODEL_REPOSITORY, Machine.detect())] == []


def test_check_command_exit_status(tmp_path: Path) -> None:
    cli = Path(sys.executable).parent / "ds-triton"
    ok = subprocess.run([cli, "check", str(MODEL_REPOSITORY)], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "no problems" in ok.stdout
    broken = tmp_path / "repo"
    (broken / "m" / "1").mkdir(parents=True)
    (broken / "m" / "config.pbtxt").write_text('name: "m"\nbackend: "python"\nfoo: 1\n')
    bad = subprocess.run([cli, "check", str(broken)], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1
    assert bad.stdout.splitlines() == [
        "m/1/model.py: [layout] missing; it must be the shared three-line shim "
        "(`ds-triton render` writes it)",
        'm/config.pbtxt:3:1: [schema] not a valid Triton ModelConfig: Message type "inference.ModelConfig" '
        'has no field named "foo".',
        "m/1/model.json: [layout] missing; every model folder is rendered from its spec",
    ]
    assert "3 problem(s) in 1 model(s)" in bad.stderr
