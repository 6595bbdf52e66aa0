"""A whole tune run: start the server, measure the baseline, search, validate the finalists.

The run folder (``perf/results/tune-<UTC timestamp>/``) holds ``options.json``,
``machine.json`` (what the first start measured: memory, the ceiling), one
journal per search mode and ``validation.jsonl``; with them ``--resume``
replays everything already measured and goes on from where Ctrl-C stopped
it. The report is written at the end, and after an interruption too.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ds_triton.repository.layout import ModelFolder
from ds_triton.repository.machine import Machine
from ds_triton.spec import ModelSpec
from ds_triton_perf.bench import cpu_model
from ds_triton_perf.steps import StepLog
from ds_triton_perf.tuning.drivers import LevelLoad
from ds_triton_perf.tuning.evaluate import MB, LiveEvaluator
from ds_triton_perf.tuning.journal import Journal
from ds_triton_perf.tuning.limits import MemoryBudget, available_memory, candidate_constraint, kv_row_bytes
from ds_triton_perf.tuning.live import LiveModel
from ds_triton_perf.tuning.measurement import Measurement
from ds_triton_perf.tuning.options import TuneOptions
from ds_triton_perf.tuning.search import MODES, Mode, Search, SearchOutcome, SearchState, duration
from ds_triton_perf.tuning.settings import apply, current, default_dimensions
from ds_triton_perf.tuning.space import Candidate, SearchSpace, restrict
from ds_triton_perf.tuning.validate import (
    Validation,
    load_validations,
    measure_ceiling,
    save_validation,
    validate,
)
from ds_triton_perf.tuning.workload import Workload, load_workload


@dataclass
class TuneRun:
    """What a run found; the report and the patch are made from it."""

    options: TuneOptions
    out_dir: Path
    base: ModelSpec
    workload: Workload
    machine: dict[str, Any]
    space: SearchSpace | None = None
    start: Candidate | None = None
    outcomes: dict[str, SearchOutcome] = field(default_factory=dict)
    validations: dict[str, Validation] = field(default_factory=dict)
    recommended: Measurement | None = None
    recommendation: str = ""
    interrupted: bool = False
    notes: list[str] = field(default_factory=list)
    wall_s: float = 0.0

    @property
    def primary(self) -> SearchOutcome | None:
        """The outcome the recommendation comes from (brute's in a comparison: it saw everything)."""
        for mode in ("brute", "quick"):
            if mode in self.outcomes:
                return self.outcomes[mode]
        return None

    @property
    def baseline(self) -> Measurement | None:
        """The model's own settings, measured in full (the "before")."""
        for outcome in self.outcomes.values():
            for measurement in outcome.full:
                if self.start is not None and measurement.candidate == self.start.key:
                    return measurement
        return None

    def new_spec(self) -> ModelSpec | None:
        return apply(self.base, self.recommended.settings) if self.recommended else None


def new_run_folder(root: Path) -> Path:
    return root / f"tune-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}"


def run_tune(options: TuneOptions, out_dir: Path, log: StepLog | None = None) -> TuneRun:
    """Run (or resume) the tune run of ``options`` in ``out_dir``; Ctrl-C ends it with a partial run."""
    log = log or StepLog()
    started = time.monotonic()
    options.save(out_dir)
    source = ModelFolder(options.repository / options.model)
    base = ModelSpec.load(source.spec_path)
    workload = load_workload(options.model, base.task, options.requests, options.texts, options.request_batch,
                             base.generation_options.default_max_tokens)
    run = TuneRun(options, out_dir, base, workload, _machine(out_dir))
    modes: list[Mode] = list(MODES) if options.mode == "compare" else [options.mode]
    scratch = out_dir / "scratch"
    try:
        with LiveModel(source, scratch) as live:
            log.step(f"{options.model}: tuning a scratch copy in {scratch} (its server listens on "
                     f"{live.urls.http} from the first measurement); "
                     f"objective: {options.objective.describe()}")
            _search(run, live, modes, log)
    except KeyboardInterrupt:
        run.interrupted = True
        run.outcomes.update({mode: _partial(run, mode) for mode in modes if mode not in run.outcomes})
        log.step(f"interrupted: measurements so far are in {out_dir}; resume with "
                 f"`ds-triton tune --resume {out_dir}`")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    run.wall_s = time.monotonic() - started
    _recommend(run)
    return run


def _search(run: TuneRun, live: LiveModel, modes: list[Mode], log: StepLog) -> None:
    options = run.options
    load = LevelLoad(options.model, run.base.task, live.urls, run.workload, options.driver, run.out_dir)
    evaluator = LiveEvaluator(live, live.spec, load, options.objective, log, options.max_concurrency,
                              run.notes)
    machine = Machine.detect()
    dimensions = default_dimensions(live.spec, machine.cores)
    coupled = (("instances", "threads"),) if any(d.name == "threads" for d in dimensions) else ()
    space = restrict(SearchSpace(dimensions, coupled=coupled), options.set_values)
    start = space.snap(current(live.spec, machine.cores))
    run.start = start
    baseline = _journal(run, modes[0]).get(start.key, "full")
    if baseline is None:
        log.step(f"baseline (the model's own settings): {start.key}")
        baseline = evaluator(start, options.fidelity, None)
        _journal(run, modes[0]).add(baseline)
    memory = _memory_budget(run, live, apply(live.spec, start), baseline)
    run.space = SearchSpace(space.dimensions, candidate_constraint(live.spec, live.folder, machine, memory),
                            space.coupled)
    log.step(f"search space: {run.space.size} grid points, {len(run.space.valid_grid())} can run here "
             f"({machine.describe()}, {memory.available_bytes / MB:.0f} MB for instances)")
    for mode in modes:
        search = Search(run.space, options.objective, evaluator, options.fidelity, _journal(run, mode),
                        options.budget_s, progress=_progress(log, options.budget_s))
        outcome = search.run(mode, start)
        run.outcomes[mode] = outcome
        log.step(f"{mode}: {outcome.stop_reason}; {len(outcome.measurements)} measurements in "
                 f"{outcome.spent_s / 60:.1f} min")
    _validate_finalists(run, evaluator, live, log)


def _validate_finalists(run: TuneRun, evaluator: LiveEvaluator, live: LiveModel, log: StepLog) -> None:
    options = run.options
    primary = run.primary
    if primary is None or options.validate_top <= 0:
        return
    ceiling = run.machine.get("ceiling_items_per_s")
    if options.ceiling and run.base.task == "embedding" and ceiling is None:
        log.step("in-process ceiling (the model's forward loop, no server)")
        ceiling, batch = measure_ceiling(live.folder.root, run.workload)
        run.machine.update(ceiling_items_per_s=ceiling, ceiling_batch=batch)
        _save_machine(run.out_dir, run.machine)
    path = run.out_dir / "validation.jsonl"
    run.validations = load_validations(path)
    for finalist in top(primary.full, options.validate_top):
        if finalist.candidate not in run.validations:
            log.step(f"validating {finalist.candidate} against the latency bars")
            result = validate(evaluator, finalist, options.fidelity, run.workload, ceiling)
            run.validations[finalist.candidate] = result
            save_validation(path, result)


def top(measurements: list[Measurement], count: int) -> list[Measurement]:
    """The ``count`` best measurements that met the constraints, best first."""
    feasible = [m for m in measurements if m.feasible]
    return sorted(feasible, key=lambda m: (-(m.score or 0.0), m.candidate))[:count]


def _recommend(run: TuneRun) -> None:
    primary = run.primary
    if primary is None or primary.best is None:
        run.recommendation = ("no candidate met the constraints: the frontier in the report shows what "
                              "this machine can do; relax the limits or change the workload")
        return
    run.recommended = primary.best
    if run.options.require_bars:
        meeting = [m for m in top(primary.full, run.options.validate_top)
                   if run.validations.get(m.candidate) and run.validations[m.candidate].meets]
        if not meeting:
            run.recommended = None
            run.recommendation = ("no validated candidate meets the latency bars; the frontier in the report "
                                  f"shows the trade-off (best by the objective: {primary.best.candidate})")
            return
        run.recommended = meeting[0]
    baseline = run.baseline
    if baseline is not None and baseline.candidate == run.recommended.candidate:
        moved = run.start is not None and run.start.as_dict() != current(run.base, int(run.machine["cores"]))
        run.recommendation = ("the starting point (the model's own settings moved into the --set values) "
                              "is the best measured" if moved else
                              "the model's own settings are already the best measured")
    else:
        run.recommendation = f"best by the objective: {run.recommended.candidate}"


def _journal(run: TuneRun, mode: str) -> Journal:
    return Journal(run.out_dir / f"journal-{mode}.jsonl")


def _partial(run: TuneRun, mode: Mode) -> SearchOutcome:
    measured = _journal(run, mode).measurements()
    feasible = [m for m in measured if m.fidelity == "full" and m.feasible]
    best = top(feasible, 1)
    return SearchOutcome(mode, measured, best[0] if best else None, sum(m.seconds for m in measured),
                         "interrupted (Ctrl-C)", 0, complete=False)


def _memory_budget(run: TuneRun, live: LiveModel, spec: ModelSpec, baseline: Measurement) -> MemoryBudget:
    """From ``machine.json`` when resuming (so the space is the same), else measured now."""
    saved = run.machine.get("memory")
    if saved:
        return MemoryBudget(**saved)
    checkpoint = spec.resolve_checkpoint(live.folder.version_dir)
    budget = MemoryBudget.measured(run.machine["available_memory_bytes"], int(baseline.memory_mb * MB), spec,
                                   len(live.gpu_ids), kv_row_bytes(spec, checkpoint))
    run.machine["memory"] = {"available_bytes": budget.available_bytes,
                             "per_instance_bytes": budget.per_instance_bytes,
                             "kv_row_bytes": budget.kv_row_bytes}
    _save_machine(run.out_dir, run.machine)
    return budget


def _machine(out_dir: Path) -> dict[str, Any]:
    """This machine as the run's first start saw it (kept for a resumed run)."""
    path = out_dir / "machine.json"
    if path.is_file():
        return dict(json.loads(path.read_text()))
    machine = Machine.detect()
    data = {"cpu": cpu_model(), "cores": machine.cores, "gpus": list(machine.gpu_ids),
            "memory_total_bytes": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
            "available_memory_bytes": available_memory(),
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "load_average_start": " ".join(f"{v:.2f}" for v in os.getloadavg())}
    _save_machine(out_dir, data)
    return data


def _save_machine(out_dir: Path, data: dict[str, Any]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "machine.json").write_text(json.dumps(data, indent=2) + "\n")


def _progress(log: StepLog, budget_s: float | None) -> Any:
    def show(measurement: Measurement, state: SearchState) -> None:
        spent = duration(state.spent_s) + (f" of {duration(budget_s)}" if budget_s else "")
        best = state.best.score if state.best else None
        shown = "–" if best is None else f"{best:.1f}" if best >= 0 else f"{-best:.1f} ms"
        figure = "failed: " + measurement.failed if measurement.failed else (
            "meets no constraint" if not measurement.feasible else
            f"{measurement.score:.1f}" if (measurement.score or 0) >= 0
            else f"{-(measurement.score or 0):.1f} ms")
        source = " (from the journal)" if state.last_replayed else ""
        log.detail(f"{state.mode} {measurement.fidelity} {measurement.candidate}: {figure}{source} "
                   f"[spent {spent}, best {shown}]")

    return show
