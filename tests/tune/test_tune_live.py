"""``ds-triton tune`` end to end on a real server: quick, a tiny budget, a tiny model, the result applied.

The model is a 2-layer DistilBERT with random weights; the search space is
pinned by ``--set`` to two batch sizes with no queue delay, so the run is a
few reloads long and the patch always changes something (the model asks for
a 2000 µs delay, the space has only 0). The load comes from a user JSONL
file. The run is first made without ``--apply``; ``--resume`` then replays it
from its journal without a server and applies the result, which must be
written, rendered and checked.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from ds_triton.repository.layout import ModelFolder
from ds_triton.repository.render import config_text, render_config
from ds_triton.spec import ModelSpec
from tests.repository import tiny_checkpoints
from tests.repository.live import CLI, add_model

pytestmark = [pytest.mark.server, pytest.mark.slow]

TUNE_TIMEOUT_S = 900  # a few model loads on a machine that may be busy


def _processes_mentioning(text: str) -> list[int]:
    """Processes whose command line names ``text`` (this test's own folder: its server and stubs)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if text in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _tune(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CLI), "tune", *args], capture_output=True, text=True, timeout=TUNE_TIMEOUT_S)


def test_quick_tune_of_a_tiny_model_is_applied_rendered_and_checked(tmp_path: Path) -> None:
    repo = tmp_path / "model_repository"
    add_model(repo, "tiny", "--task", "embedding", "--cpu", "--instances", "1", "--threads-per-instance", "1",
              "--checkpoint", str(tiny_checkpoints.make_distilbert(tmp_path / "distilbert")),
              "--max-batch-size", "8", "--preferred-batch-sizes", "", "--max-queue-delay-us", "2000")
    requests = tmp_path / "requests.jsonl"
    requests.write_text("".join(json.dumps({"text": f"tuning request number {i}"}) + "\n" for i in range(20)))
    folder = ModelFolder(repo / "tiny")
    before = folder.spec_path.read_text()

    first = _tune("tiny", "--repository", str(repo), "--out", str(tmp_path / "results"), "--mode", "quick",
                  "--budget", "30s", "--window", "0.5s", "--min-windows", "2", "--max-windows", "2",
                  "--max-concurrency", "4", "--requests", str(requests), "--validate-top", "1",
                  "--set", "instances=1", "--set", "threads=1", "--set", "max_batch_size=4,8",
                  "--set", "preferred=none", "--set", "max_queue_delay_us=0", "--no-progress")
    assert first.returncode == 0, first.stdout + first.stderr
    assert folder.spec_path.read_text() == before  # only the scratch copy changed
    [run_dir] = (tmp_path / "results").glob("tune-*")
    assert not (run_dir / "scratch").exists()
    assert not _processes_mentioning(str(tmp_path))  # its server and stubs are gone
    assert "--- a/" in first.stdout and '"max_queue_delay_us": 0' in first.stdout  # the patch, printed

    html = (run_dir / "report.html").read_text()
    assert "Pareto" in html or "pareto" in html
    assert "data:image/png;base64," in html
    assert "Top 5" in (run_dir / "summary.md").read_text()
    results = json.loads((run_dir / "results.json").read_text())
    measured = results["outcomes"]["quick"]["measurements"]
    assert measured and all(m["settings"]["max_queue_delay_us"] == 0 for m in measured)
    assert measured[0]["levels"] and measured[0]["levels"][0]["requests"] > 0
    recommended = results["recommended"]
    assert recommended is not None

    second = _tune("--resume", str(run_dir), "--apply")
    assert second.returncode == 0, second.stdout + second.stderr
    assert "ds-triton check: no problems" in second.stdout
    replayed = json.loads((run_dir / "results.json").read_text())["outcomes"]["quick"]["replayed"]
    assert replayed == len(measured)  # the resumed run measured nothing again
    assert not _processes_mentioning(str(tmp_path))

    applied = ModelSpec.load(folder.spec_path)
    chosen = next(m["settings"] for m in measured if m["candidate"] == recommended)
    assert applied.batching.max_queue_delay_us == 0
    assert applied.batching.max_batch_size == chosen["max_batch_size"]
    assert applied.deployment.instances_per_device == 1 and applied.deployment.threads_per_instance == 1
    assert folder.config_path.read_text() == config_text(
        render_config(applied, embedding_dimension=tiny_checkpoints.ENCODER_DIM))
    check = subprocess.run([str(CLI), "check", str(repo)], capture_output=True,
                           text=True, timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr
