"""A bench run survives its failures and keeps its time budget; the README's results block is written
from a run (pure logic, no server)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ds_triton_perf import bench
from ds_triton_perf.cli import main
from ds_triton_perf.guard import Guard
from ds_triton_perf.kinds import Kind, KindContext, soak
from ds_triton_perf.report.readme import BEGIN, END, ReadmeError, latest_results_block, replace_block
from ds_triton_perf.results import BenchResults, write_raw
from ds_triton_perf.scenarios import ModelScenarios
from ds_triton_perf.steps import StepLog
from ds_triton_perf.systems import ServerUrls
from tests.perf import synthetic


def _log() -> StepLog:
    import io

    return StepLog(io.StringIO())


def test_a_failing_point_is_a_note_with_its_traceback_and_the_next_point_runs(tmp_path: Path) -> None:
    notes: list[str] = []
    guard = Guard(notes, _log(), errors_path=tmp_path / "errors.log")
    ran = []

    def boom(where: str) -> None:
        raise ConnectionError(f"peer at {where} refused\nsecond line says why")

    assert not guard.run("text_embedding pytriton", boom, "127.0.0.1:1")
    assert guard.run("text_embedding rest", ran.append, "rest")
    assert ran == ["rest"] and guard.failed == ["text_embedding pytriton"]
    assert notes == ["text_embedding pytriton: failed, ConnectionError: second line says why"]
    assert "peer at 127.0.0.1:1 refused" in (tmp_path / "errors.log").read_text()


def test_interrupts_are_not_swallowed() -> None:
    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Guard([], _log()).run("point", interrupted)


def test_once_the_budget_is_spent_points_are_skipped_but_the_analysis_still_runs() -> None:
    notes: list[str] = []
    guard = Guard(notes, _log(), budget_s=0.0)
    ran: list[str] = []
    assert guard.expired() and guard.remaining_s() is not None
    assert not guard.run("text_generation overload overload", ran.append, "overload")
    assert guard.run("comparisons and verdicts", ran.append, "compare", budgeted=False)
    assert ran == ["compare"] and guard.skipped == ["text_generation overload overload"]
    assert notes == ["text_generation overload overload: skipped, the run's time budget (0 min) was spent"]
    assert not Guard([], _log()).expired() and Guard([], _log()).remaining_s() is None


@dataclass(frozen=True)
class _Config:
    name: str = "x"


def test_a_kind_that_raises_costs_its_own_rows_only(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    ran: list[str] = []

    def broken(ctx: KindContext, suite: ModelScenarios, config: _Config) -> None:
        raise KeyError("capacity_rps")

    def working(ctx: KindContext, suite: ModelScenarios, config: _Config) -> None:
        ran.append(config.name)

    def no_verdicts(results: BenchResults, rows: list[Any]) -> None:
        return None

    kinds = {key: Kind(key, key, _Config, run, no_verdicts, lambda *a: None)
             for key, run in (("broken", broken), ("working", working))}
    monkeypatch.setattr(bench, "registry", lambda: kinds)
    results = BenchResults(meta={})
    context = KindContext(results, ServerUrls("h:1", "h:2"), tmp_path, tmp_path, _log())
    suite = ModelScenarios(model="m", task="embedding", texts={}, extra={"broken": [_Config("b")],
                                                                "working": [_Config("w")]})
    bench._run_kinds(context, suite, Guard(results.notes, _log()))
    assert ran == ["w"]
    assert results.notes == ["m broken b: failed, KeyError: 'capacity_rps'"]


def test_the_soak_fits_what_is_left_of_the_budget(tmp_path: Path) -> None:
    config = soak.SoakScenario(max_s=900.0, idle_s=10.0)
    context = KindContext(BenchResults(meta={}), ServerUrls("h:1", "h:2"), tmp_path, tmp_path, _log())
    assert soak._time_cap(context, config, 10.0) == 900.0
    context.deadline = time.monotonic() + 310.0
    assert 295.0 < soak._time_cap(context, config, 10.0) <= 300.0
    context.deadline = time.monotonic() - 5.0  # spent: the soak still gets a minute rather than nothing
    assert soak._time_cap(context, config, 10.0) == 60.0


def test_a_soak_cut_short_says_how_many_requests_it_measured() -> None:
    row = {"requests": {"a": 1000, "b": 100}, "warmup_requests": {"a": 100, "b": 10},
           "sent": {"a": 600, "b": 110}, "cut_short": True}
    assert soak._measured_count(row, "a") == 500 and soak._measured(row, "a") == "500 of 1000"
    assert soak._measured(row, "b") == "100"
    del row["sent"]  # rows from before the time cap: everything was sent
    assert soak._measured_count(row, "a") == 1000


def _run_folder(tmp_path: Path) -> Path:
    results = synthetic.results()
    results.meta.update(date="2026-11-28 04:00 UTC", machine="2-core test VM, no GPU",
                        command="ds-triton-perf bench --budget-min 33", elapsed_s=1500.0, quick=False,
                        load_average_start="0.10 0.20 0.30", load_average_end="1.00 1.10 1.20",
                        failed_points=["text_embedding pytriton"], skipped_points=[])
    run_dir = tmp_path / "20261128-040000"
    write_raw(results, run_dir)
    return run_dir


def test_the_readme_block_has_the_run_its_comparisons_and_every_verdict(tmp_path: Path) -> None:
    run_dir = _run_folder(tmp_path)
    data = json.loads((run_dir / "results.json").read_text())
    block = latest_results_block(run_dir, shown_as="perf/results/20261128-040000")
    assert block.startswith("Machine: 2-core test VM, no GPU · Date: 2026-11-28 04:00 UTC · Command: "
                            "`ds-triton-perf bench --budget-min 33` · Total time: 25.0 min")
    assert "`perf/results/20261128-040000/summary.md`" in block
    assert all(t["target"] in block for t in data["targets"])
    assert all(c["system"] in block for c in data["comparisons"])
    assert "text_embedding pytriton (failed)" in block
    with pytest.raises(ReadmeError, match=r"results\.json"):
        latest_results_block(tmp_path)


def test_make_bench_readme_replaces_only_the_marked_block(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = _run_folder(tmp_path)
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n\n### Latest results\n{BEGIN}\nold table | 1.0\n{END}\n\n### After\nkept\n")
    assert main(["readme", str(run_dir), "--write", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith(f"# Title\n\n### Latest results\n{BEGIN}\nMachine: 2-core test VM")
    assert text.endswith(f"{END}\n\n### After\nkept\n") and "old table" not in text
    assert main(["readme", str(run_dir), "--write", str(readme)]) == 0
    assert readme.read_text() == text  # idempotent
    assert main(["readme", str(run_dir)]) == 0 and "Verdicts (" in capsys.readouterr().out
    with pytest.raises(ReadmeError, match="markers"):
        replace_block("no markers here", "block")
    readme.write_text("no markers")
    assert main(["readme", str(run_dir), "--write", str(readme)]) == 1


def test_the_shipped_readme_has_the_markers() -> None:
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert replace_block(text, "x").count("x") >= 1


_TINY = """
model: text_embedding
task: embedding
texts:
  uniform: {short: 1.0}
loadgen:
  - {name: closed, mode: closed, sweep: [1], texts: uniform, systems: [triton], duration_s: 1}
"""


def _bench_cli(tmp_path: Path) -> tuple[int, Path]:
    scenarios = tmp_path / "scenarios"
    scenarios.mkdir()
    (scenarios / "text_embedding.yaml").write_text(_TINY)
    code = main(["bench", "--no-progress", "--scenarios", str(scenarios), "--out", str(tmp_path / "out"),
                 "--budget-min", "5"])
    (run_dir,) = (tmp_path / "out").iterdir()
    return code, run_dir


def test_without_a_server_the_run_still_writes_its_report_and_exits_non_zero(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import contextlib

    @contextlib.contextmanager
    def no_server(*args: Any) -> Any:
        raise RuntimeError("tritonserver exited with 1 before it was ready")
        yield

    monkeypatch.setattr(bench, "_server", no_server)
    code, run_dir = _bench_cli(tmp_path)
    assert code == 1
    summary = (run_dir / "summary.md").read_text()
    assert "the benchmark server: failed, RuntimeError: tritonserver exited with 1" in summary
    assert (run_dir / "report.html").is_file() and (run_dir / "errors.log").is_file()


def test_ctrl_c_writes_what_was_measured(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import contextlib

    stopped = []

    @contextlib.contextmanager
    def fake_server(*args: Any) -> Any:
        try:
            yield ServerUrls("127.0.0.1:1", "127.0.0.1:2"), None, None
        finally:
            stopped.append(True)

    def interrupted(*args: Any) -> bool:
        raise KeyboardInterrupt

    monkeypatch.setattr(bench, "_server", fake_server)
    monkeypatch.setattr(bench, "_model_ready", interrupted)
    code, run_dir = _bench_cli(tmp_path)
    assert code == 130 and stopped == [True]
    results = json.loads((run_dir / "results.json").read_text())
    assert results["notes"][0].startswith("interrupted (Ctrl-C)")
    assert results["meta"]["budget_min"] == 5
    assert (run_dir / "report.html").is_file()


def test_a_kind_whose_section_fails_costs_a_note_once_not_the_report(monkeypatch: pytest.MonkeyPatch,
                                                                       tmp_path: Path) -> None:
    import dataclasses

    from ds_triton_perf import kinds
    from ds_triton_perf.report.html import write_html
    from ds_triton_perf.report.summary import summary_markdown

    def broken(model: str, rows: list[Any], results: BenchResults) -> None:
        raise KeyError("surge_p99_ms")

    registry = dict(kinds.registry())
    registry["overload"] = dataclasses.replace(registry["overload"], section=broken)
    monkeypatch.setattr(kinds, "_REGISTRY", registry)
    results = synthetic.results()
    summary = summary_markdown(results)
    write_html(results, tmp_path / "report.html")
    note = "overload: its report section could not be built (KeyError: 'surge_p99_ms')"
    assert results.notes.count(note) == 1 and note in summary
    assert "Overload (3× capacity" not in summary and "Memory soak" in summary  # the others still there
