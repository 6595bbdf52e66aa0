"""`ds-triton add-model`: one command writes a complete, checked model folder (or nothing)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ds_triton.cli import main
from ds_triton.repository.checks import check_repository
from ds_triton.repository.layout import SHIM_SOURCE
from ds_triton.repository.machine import Machine
from ds_triton.repository.schema import read_config
from tests.repository.conftest import MINILM, edit


def add(repo: Path, *args: str) -> int:
    return main(["add-model", *args, "--repository", str(repo)])


def spec_of(repo: Path, name: str) -> dict[str, object]:
    return json.loads((repo / name / "1" / "model.json").read_text())


def test_embedding_with_every_option(tmp_path: Path, checkpoints: dict[str, Path],
                                     capsys: pytest.CaptureFixture[str]) -> None:
    repo = tmp_path / "repo"
    code = add(
        repo, "distil", "--task", "embedding", "--checkpoint", str(checkpoints["distilbert"]),
        "--gpus", "0,1", "--instances-per-gpu", "2", "--max-batch-size", "32",
        "--preferred-batch-sizes", "8,32", "--max-queue-delay-us", "500", "--queue-size", "100",
        "--queue-timeout-us", "9000", "--latency-budget-ms", "20", "--no-timeout-override",
        "--dtype", "fp16", "--kernel-inject", "on", "--pooling", "cls",
        "--max-length", "64", "--no-normalize", "--no-length-bucketing",
    )
    assert code == 0
    out = capsys.readouterr()
    assert "added model 'distil'" in out.out
    # The checkpoint lives outside the repository: it is copied in, so the folder is self-contained.
    assert f"copied checkpoint {checkpoints['distilbert']}" in out.out
    imported = sorted(p.name for p in checkpoints["distilbert"].iterdir())
    assert sorted(p.relative_to(repo / "distil").as_posix() for p in (repo / "distil").rglob("*")) == [
        "1", "1/checkpoint", *(f"1/checkpoint/{name}" for name in imported), "1/model.json",
        "1/model.py", "config.pbtxt",
    ]
    assert (repo / "distil" / "1" / "model.py").read_text() == SHIM_SOURCE
    spec = spec_of(repo, "distil")
    assert spec["checkpoint"] == "checkpoint"
    assert (spec["dtype"], spec["kernel_inject"]) == ("fp16", "on")
    assert spec["deployment"] == {"device": "gpu", "gpus": [0, 1], "instances_per_device": 2,
                                  "threads_per_instance": None, "tensor_parallel": 1}
    assert spec["batching"] == {"max_batch_size": 32, "preferred_batch_sizes": [8, 32],
                                "max_queue_delay_us": 500, "latency_budget_ms": 20, "max_queue_size": 100,
                                "queue_timeout_us": 9000, "allow_timeout_override": False}
    assert spec["embedding"]["pooling"] == "cls"  # type: ignore[index]
    assert spec["embedding"]["normalize"] is False  # type: ignore[index]
    assert spec["embedding"]["length_bucketing"] is False  # type: ignore[index]
    config = read_config(repo / "distil" / "config.pbtxt")
    assert [(g.count, list(g.gpus)) for g in config.instance_group] == [(2, [0]), (2, [1])]
    assert list(config.output[0].dims) == [48]  # DistilBERT's `dim`, read from its config.json
    # No GPU here: written (the repository may be for a GPU server) with a warning per group.
    if not Machine.detect().gpu_ids:
        assert out.err.count("warning: will not load on this machine") == 2
    assert check_repository(repo, Machine(cores=4, gpu_ids=(0, 1))) == []


def test_generation_defaults_to_one_cpu_instance(tmp_path: Path, checkpoints: dict[str, Path]) -> None:
    assert add(tmp_path, "opt", "--task", "generation", "--checkpoint", str(checkpoints["opt"])) == 0
    config = read_config(tmp_path / "opt" / "config.pbtxt")
    assert config.model_transaction_policy.decoupled
    assert [(g.kind, g.count) for g in config.instance_group] == [(config.instance_group[0].KIND_CPU, 1)]
    assert "batching" not in spec_of(tmp_path, "opt")  # it cannot apply to a decoupled model


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--task", "generation", "--pooling", "cls"], "--pooling does not apply to a generation model"),
        (["--task", "generation", "--max-batch-size", "8", "--queue-size", "4"],
         "--max-batch-size, --queue-size do not apply to a generation model (it is decoupled"),
        (["--task", "embedding", "--max-concurrent-sequences", "4"],
         "--max-concurrent-sequences does not apply to an embedding model"),
        (["--task", "embedding", "--max-batch-size", "8"],
         "batching.preferred_batch_sizes: 16 is outside 1..max_batch_size (8)"),
        (["--task", "embedding", "--checkpoint", "/no/such/folder"], "/no/such/folder does not exist"),
    ],
)
def test_refused_before_anything_is_written(tmp_path: Path, args: list[str], message: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    if "--checkpoint" not in args:
        args = [*args, "--checkpoint", MINILM]
    assert add(tmp_path / "repo", "m", *args) == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "repo" / "m").exists()
    assert not [p for p in tmp_path.iterdir() if p.name != "repo"]  # no staging left behind


def test_architecture_that_cannot_generate_is_refused(tmp_path: Path, checkpoints: dict[str, Path],
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert add(tmp_path, "t5", "--task", "generation", "--checkpoint", str(checkpoints["t5"])) == 1
    assert "architecture 't5'" in capsys.readouterr().err
    assert not (tmp_path / "t5").exists()


def test_invalid_name_and_gpu_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert add(tmp_path, "bad name", "--task", "embedding", "--checkpoint", MINILM) == 1
    assert "name must be letters, digits" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        add(tmp_path, "m", "--task", "embedding", "--checkpoint", MINILM, "--gpus", "zero")
    assert "expected 'all' or GPU ids" in capsys.readouterr().err
    assert add(tmp_path, "m", "--task", "embedding", "--checkpoint", MINILM, "--gpus", "1,1") == 1
    assert "lists a GPU more than once" in capsys.readouterr().err


def test_existing_model_needs_force_and_is_replaced_in_place(tmp_path: Path) -> None:
    base = ["--task", "embedding", "--checkpoint", MINILM]
    assert add(tmp_path, "m", *base) == 0
    assert add(tmp_path, "m", *base, "--max-batch-size", "16", "--preferred-batch-sizes", "") == 1
    assert read_config(tmp_path / "m" / "config.pbtxt").max_batch_size == 64
    assert add(tmp_path, "m", *base, "--force", "--max-batch-size", "16", "--preferred-batch-sizes", "") == 0
    assert read_config(tmp_path / "m" / "config.pbtxt").max_batch_size == 16
    assert check_repository(tmp_path, Machine(cores=4)) == []


def test_checkpoint_inside_the_version_folder_is_stored_relative(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    assert add(repo, "m", "--task", "embedding", "--checkpoint", MINILM) == 0
    # Move the weights into the model folder, then re-add pointing at them.
    import shutil

    from ds_triton.spec import ModelSpec

    source = ModelSpec.load(repo / "m").resolve_checkpoint(repo / "m" / "1")
    shutil.copytree(source, repo / "m" / "1" / "weights")
    assert add(repo, "m", "--task", "embedding", "--checkpoint", str(repo / "m" / "1" / "weights"),
               "--force") == 0
    assert spec_of(repo, "m")["checkpoint"] == "weights"
    assert check_repository(repo, Machine(cores=4)) == []


def test_oversubscribed_cpu_is_written_with_a_warning(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    cores = Machine.detect().cores
    args = ["--task", "embedding", "--checkpoint", MINILM, "--cpu", "--instances", str(cores + 1)]
    assert add(tmp_path, "m", *args) == 0
    assert f"{cores + 1} threads > {cores} cores" in capsys.readouterr().err


def test_render_command_restores_a_hand_edited_config(tmp_path: Path) -> None:
    assert add(tmp_path, "m", "--task", "embedding", "--checkpoint", MINILM) == 0
    edit(tmp_path / "m" / "config.pbtxt", "max_batch_size: 64", "max_batch_size: 8")
    assert main(["render", str(tmp_path), "--check"]) == 1
    assert main(["render", str(tmp_path)]) == 0
    assert main(["render", str(tmp_path), "--check"]) == 0
    assert read_config(tmp_path / "m" / "config.pbtxt").max_batch_size == 64
    assert main(["render", str(tmp_path), "--model", "nope"]) == 2
