"""``ds-triton render``: rewrite ``config.pbtxt`` (and the shim) of models from their ``model.json``."""

from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path

from ds_triton.checkpoint_files import CheckpointError
from ds_triton.errors import SpecError
from ds_triton.repository.checks import Problem, ProblemKind
from ds_triton.repository.checks.subject import SPEC_FILE
from ds_triton.repository.layout import SHIM_SOURCE, ModelFolder, model_folders
from ds_triton.repository.machine import detect_gpu_ids
from ds_triton.repository.writer import render_folder, write_rendered, write_text_atomic


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "render",
        help="re-render config.pbtxt from model.json",
        description="Re-render config.pbtxt of each model from its 1/model.json (after editing "
        "model.json, or to render gpus \"all\" for a machine with --gpu-count).",
    )
    parser.add_argument("repository", nargs="?", type=Path, default=Path("model_repository"))
    parser.add_argument("--model", action="append", default=[], help="only this model (repeatable)")
    parser.add_argument(
        "--gpu-count",
        type=int,
        help='render gpus "all" as GPUs 0..N-1 (default: this machine\'s GPUs; none leaves '
        '"all" to Triton)',
    )
    parser.add_argument(
        "--check", action="store_true", help="write nothing; show differences and exit 1 if any"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    repository: Path = args.repository
    if not repository.is_dir():
        print(f"error: {repository} is not a folder", file=sys.stderr)
        return 2
    folders = _selected(repository, args.model)
    if folders is None:
        return 2
    gpu_ids = detect_gpu_ids() if args.gpu_count is None else tuple(range(args.gpu_count))
    failed = differing = 0
    for folder in folders:
        try:
            rendered = render_folder(folder, gpu_ids)
        except SpecError as exc:
            kind: ProblemKind = "checkpoint" if isinstance(exc, CheckpointError) else "spec"
            print(f"{Problem(folder.name, kind, str(exc), where=SPEC_FILE)} (not rendered)", file=sys.stderr)
            failed += 1
            continue
        shim_ok = folder.shim_path.is_file() and folder.shim_path.read_text() == SHIM_SOURCE
        if args.check:
            if rendered.changed or not shim_ok:
                differing += 1
                _show_difference(folder, rendered.current, rendered.text, shim_ok)
            continue
        if not shim_ok:
            write_text_atomic(folder.shim_path, SHIM_SOURCE)
            print(f"{folder.name}: wrote {folder.shim_path}")
        print(f"{folder.name}: {'rendered' if write_rendered(rendered) else 'up to date'}")
    if failed:
        return 1
    return 1 if differing else 0


def _selected(repository: Path, names: list[str]) -> list[ModelFolder] | None:
    folders = [f for f in model_folders(repository) if f.spec_path.is_file()]
    if not names:
        return folders
    known = {f.name: f for f in folders}
    missing = [n for n in names if n not in known]
    if missing:
        print(f"error: no model.json for {', '.join(missing)} in {repository}", file=sys.stderr)
        return None
    return [known[n] for n in names]


def _show_difference(folder: ModelFolder, current: str | None, text: str, shim_ok: bool) -> None:
    if not shim_ok:
        print(f"{folder.name}: 1/model.py is not the shared shim")
    if current == text:
        return
    diff = difflib.unified_diff(
        (current or "").splitlines(keepends=True), text.splitlines(keepends=True),
        fromfile=f"{folder.name}/config.pbtxt", tofile=f"{folder.name}/config.pbtxt (rendered)",
    )
    sys.stdout.writelines(diff)
