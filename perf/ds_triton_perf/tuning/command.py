"""``ds-triton tune``: options → run → report → patch (printed; written with ``--apply``)."""

from __future__ import annotations

import argparse
import io
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

from ds_triton.errors import SpecError
from ds_triton.repository.layout import ModelFolder
from ds_triton.repository.machine import Machine
from ds_triton.spec import ModelSpec
from ds_triton_perf.report.summary import table
from ds_triton_perf.steps import StepLog
from ds_triton_perf.tuning.cli import fail
from ds_triton_perf.tuning.measurement import Fidelity
from ds_triton_perf.tuning.objective import Objective, ObjectiveKind
from ds_triton_perf.tuning.options import TuneOptions, parse_duration
from ds_triton_perf.tuning.patch import SpecPatch, apply_patch, spec_patch
from ds_triton_perf.tuning.report import write_report
from ds_triton_perf.tuning.run import TuneRun, new_run_folder, run_tune
from ds_triton_perf.tuning.settings import parse_values
from ds_triton_perf.tuning.workload import WorkloadError

INTERRUPTED = 130


def tune(args: argparse.Namespace) -> int:
    try:
        options, out_dir = _options(args)
    except (ValueError, SpecError, FileNotFoundError) as exc:
        return fail(str(exc))
    log = StepLog(io.StringIO() if args.no_progress else sys.stderr)
    try:
        run = run_tune(options, out_dir, log)
    except (WorkloadError, SpecError) as exc:
        return fail(str(exc))
    source = ModelFolder(options.repository / options.model)
    new_spec = run.new_spec()
    patch = spec_patch(source.spec_path, run.base, new_spec, shown_as=_shown(source.spec_path)) \
        if new_spec is not None else None
    report = write_report(run, patch)
    print(_summary(run, patch, report.groups[0].sections[1].tables[0].rows if report.groups else []))
    if run.interrupted:
        return INTERRUPTED
    if run.recommended is None:
        return 1
    if args.apply and patch is not None:
        return _apply(patch, source)
    if patch is not None and not patch.empty:
        print(f"apply with: ds-triton tune --resume {out_dir} --apply   (replays the run, then writes it)")
    return 0


def build_objective(args: argparse.Namespace, spec: ModelSpec) -> Objective:
    kind = args.objective or ("tokens" if spec.task == "generation" else "throughput")
    if kind == "tokens" and spec.task != "generation":
        raise ValueError("--objective tokens is for generation models")
    p99 = args.p99_ms if args.p99_ms is not None else (
        spec.batching.latency_budget_ms if spec.task == "embedding" and kind == "throughput" else None)
    return Objective(cast(ObjectiveKind, kind), p99_ms=p99, rate=args.rate, ttft_p99_ms=args.ttft_p99_ms,
                     itl_p99_ms=args.itl_p99_ms)


def _options(args: argparse.Namespace) -> tuple[TuneOptions, Path]:
    if args.resume is not None:
        return TuneOptions.load(args.resume), args.resume
    if not args.model:
        raise ValueError("name the model to tune (or --resume RUN_DIR)")
    folder = ModelFolder(args.repository / args.model)
    if not folder.spec_path.is_file():
        raise FileNotFoundError(f"no model {args.model!r} in {args.repository} (no {folder.spec_path})")
    spec = ModelSpec.load(folder.spec_path)
    if args.load == "perf_analyzer" and spec.task != "embedding":
        raise ValueError("--load perf_analyzer drives embedding models; generation needs the load "
                         "generator's time to first token and inter-token latency")
    window = parse_duration(args.window)
    options = TuneOptions(
        model=args.model, repository=args.repository,
        mode="compare" if args.compare_modes else args.mode,
        objective=build_objective(args, spec),
        budget_s=parse_duration(args.budget) if args.budget else None,
        fidelity=Fidelity("full", window, args.min_windows, args.max_windows, args.ci),
        driver=args.load, requests=args.requests, texts=args.texts, request_batch=args.request_batch,
        set_values=dict(parse_values(text) for text in args.set), max_concurrency=args.max_concurrency,
        validate_top=args.validate_top, ceiling=args.ceiling, require_bars=args.require_bars,
    )
    return options, new_run_folder(args.out)


def _apply(patch: SpecPatch, source: ModelFolder) -> int:
    if patch.empty:
        print(f"{source.name}: nothing to apply (its settings are already the recommendation)")
        return 0
    problems = apply_patch(patch, source, Machine.detect())
    print(f"{source.name}: wrote {patch.path} and rendered {source.config_path}")
    for problem in problems:
        print(f"  {problem}")
    print(f"ds-triton check: {'no problems' if not problems else f'{len(problems)} problem(s)'}")
    return 1 if problems else 0


def _summary(run: TuneRun, patch: SpecPatch | None, top_rows: Sequence[Sequence[Any]]) -> str:
    lines = [f"\n{run.options.model}: {run.recommendation}"]
    baseline, chosen = run.baseline, run.recommended
    shown = run.options.objective.shown
    unit = run.options.objective.unit
    if baseline is not None and chosen is not None:
        before, after = shown(baseline.score), shown(chosen.score)
        lines.append(f"  before: {_figure(before)} {unit}  ({baseline.candidate})")
        lines.append(f"  after:  {_figure(after)} {unit}  ({chosen.candidate})")
    if top_rows:
        lines += ["", "top candidates:", table(["#", "settings", f"objective ({unit})", "±", "at"],
                                               [list(row[:5]) for row in top_rows])]
    if patch is not None and not patch.empty:
        lines += ["", patch.diff.rstrip()]
    lines += ["", f"report: {run.out_dir / 'report.html'} "
                  "(summary.md, results.json, candidates.csv beside it)"]
    return "\n".join(lines)


def _figure(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def _shown(path: Path) -> str:
    try:
        relative = os.path.relpath(path)
    except ValueError:
        return str(path)
    return str(path) if relative.startswith("..") else relative
