"""A tune run's outputs from fake measurements: report files, the mode comparison, the patch.

(Applying a patch, which runs ``ds-triton check``, is tested against a real server in tests/tune.)
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ds_triton.repository.layout import ModelFolder
from ds_triton.spec import ModelSpec
from ds_triton_perf.tuning.compare import compare_modes
from ds_triton_perf.tuning.options import TuneOptions, parse_duration
from ds_triton_perf.tuning.patch import spec_patch
from ds_triton_perf.tuning.report import write_report
from ds_triton_perf.tuning.run import TuneRun, _recommend
from ds_triton_perf.tuning.workload import Workload
from tests.conftest import MODEL_REPOSITORY
from tests.unit.test_tune_search import (
    FULL,
    OPTIMUM_KEY,
    SPACE,
    START_CANDIDATE,
    THROUGHPUT,
    FakeServer,
    search,
)

MACHINE = {"cpu": "test CPU", "cores": 4, "gpus": [], "memory_total_bytes": 2**34,
           "date": "2026-11-28 00:00 UTC", "load_average_start": "0.00 0.00 0.00"}


def _run(tmp_path: Path) -> TuneRun:
    repo = tmp_path / "model_repository"
    shutil.copytree(MODEL_REPOSITORY / "text_embedding", repo / "text_embedding",
                    ignore=shutil.ignore_patterns("__pycache__"))
    folder = ModelFolder(repo / "text_embedding")
    options = TuneOptions("text_embedding", repo, mode="compare", objective=THROUGHPUT, fidelity=FULL,
                          validate_top=0)
    run = TuneRun(options, tmp_path / "tune-1", ModelSpec.load(folder.spec_path),
                  Workload("test texts", texts=(("a",),)), dict(MACHINE), space=SPACE, start=START_CANDIDATE)
    run.out_dir.mkdir()
    for mode in ("brute", "quick"):
        outcome = search(THROUGHPUT, FakeServer(THROUGHPUT)).run(mode, START_CANDIDATE)  # type: ignore[arg-type]
        run.outcomes[mode] = outcome
    _recommend(run)
    return run


def test_compare_modes_judges_quicks_pick_by_brutes_measurement(tmp_path: Path) -> None:
    comparison = compare_modes(_run(tmp_path))
    assert comparison.gap == 0.0  # quick found brute's best
    assert comparison.time_share is not None and comparison.time_share <= 0.3
    assert [v["verdict"] for v in comparison.verdicts()] == ["met", "met"]


def test_report_files_and_the_patch(tmp_path: Path) -> None:
    run = _run(tmp_path)
    assert run.recommended is not None and run.recommended.candidate == OPTIMUM_KEY
    folder = ModelFolder(run.options.repository / "text_embedding")
    new_spec = run.new_spec()
    assert new_spec is not None
    patch = spec_patch(folder.spec_path, run.base, new_spec)
    assert set(patch.changes) == {"deployment.threads_per_instance", "batching.max_batch_size",
                                  "batching.preferred_batch_sizes", "batching.max_queue_delay_us"}
    write_report(run, patch)
    html = (run.out_dir / "report.html").read_text()
    assert "data:image/png;base64," in html and "quick vs brute" in html
    summary = (run.out_dir / "summary.md").read_text()
    assert "Top 5" in summary and OPTIMUM_KEY in summary and "```diff" in summary
    results = json.loads((run.out_dir / "results.json").read_text())
    assert results["recommended"] == OPTIMUM_KEY
    assert len((run.out_dir / "candidates.csv").read_text().splitlines()) == 1 + sum(
        len(o.measurements) for o in run.outcomes.values())

    text = json.loads(patch.text)  # only the changed keys differ from the file
    assert text["batching"]["preferred_batch_sizes"] == [16, 32]
    assert text["deployment"]["threads_per_instance"] == 2
    original = json.loads(folder.spec_path.read_text())
    assert {k: v for k, v in text.items() if k not in ("batching", "deployment")} == {
        k: v for k, v in original.items() if k not in ("batching", "deployment")}


def test_durations() -> None:
    assert parse_duration("10m") == 600 and parse_duration("90s") == 90 and parse_duration("1h30m") == 5400
    assert parse_duration("45") == 45
