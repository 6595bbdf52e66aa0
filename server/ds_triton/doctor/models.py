"""Every model of the repository: spec valid and checkpoint present (``ds-triton check``'s checks)."""

from __future__ import annotations

from pathlib import Path

from ds_triton.doctor.result import Check, failed, passed
from ds_triton.repository.checks import check_repository
from ds_triton.repository.layout import model_folders
from ds_triton.repository.machine import Machine


def check_models(repository: Path, machine: Machine) -> list[Check]:
    """One line per model folder."""
    if not Path(repository).is_dir():
        return [failed("models", f"{repository} is not a folder", "pass --model-repository PATH")]
    problems = check_repository(repository, machine)
    checks = []
    for folder in model_folders(repository):
        mine = [p for p in problems if p.model == folder.name]
        name = f"model {folder.name}"
        if not mine:
            checks.append(passed(name, "spec valid, checkpoint present, config up to date"))
            continue
        detail = "; ".join(f"{p.where}: [{p.kind}] {p.message}" for p in mine)
        checks.append(failed(name, detail, f"fix {folder.name}/1/model.json (then `ds-triton render`); "
                                           f"`ds-triton check {repository}` lists every problem"))
    if not checks:
        checks.append(passed("models", f"{repository} holds no model"))
    return checks
