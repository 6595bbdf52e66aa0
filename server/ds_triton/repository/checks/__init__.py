"""Lint a model repository before Triton sees it: one precise ``Problem`` per mistake.

Each model folder is checked for its layout, ``config.pbtxt`` against
Triton's protobuf schema, ``1/model.json`` against the spec, names that differ
from the folder, the checkpoint (present, readable, inside the repository,
safe weights, an architecture the task can use), the tensor interface of the
task, options that do not apply to a decoupled model, the queue policy against
the latency budget, GPU ids and CPU threads against this machine, and finally
whether ``config.pbtxt`` is what ``model.json`` renders to (a stale render or
a hand edit). One module per family; ``registry`` lists them in order.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ds_triton.errors import SpecError
from ds_triton.repository.checks.problem import MACHINE_KINDS, Problem, ProblemKind
from ds_triton.repository.checks.registry import CHECKS, run_checks
from ds_triton.repository.checks.subject import SPEC_FILE, Subject
from ds_triton.repository.layout import ModelFolder, model_folders
from ds_triton.repository.machine import Machine
from ds_triton.spec import ModelSpec


def check_repository(repository: Path, machine: Machine) -> list[Problem]:
    """Every problem of every model folder in ``repository``."""
    repository = Path(repository)
    if not repository.is_dir():
        return [Problem(repository.name, "layout", f"{repository} is not a folder", where="")]
    return [p for folder in model_folders(repository) for p in check_model(folder, machine)]


def check_model(folder: ModelFolder, machine: Machine) -> list[Problem]:
    """Every problem of one model folder (empty when Triton will load it as specified)."""
    subject = Subject(folder, machine)
    run_checks(subject)
    return subject.problems


def unwritten_model(folder: ModelFolder, spec: ModelSpec, machine: Machine) -> Subject:
    """A model about to be written to ``folder``: its spec is checked now (checkpoint included).

    Set ``config`` on the result and call ``run_checks`` again to check the
    rendered config too.
    """
    subject = Subject(folder, machine, on_disk=False, spec=spec)
    run_checks(subject)
    return subject


def spec_problems(repository: Path) -> list[Problem]:
    """One ``[spec]`` problem per model whose ``model.json`` cannot be read (it will not load)."""
    problems = []
    for folder in model_folders(repository):
        if folder.spec_path.is_file():
            try:
                ModelSpec.load(folder.spec_path)
            except SpecError as exc:
                problems.append(Problem(folder.name, "spec", str(exc), where=SPEC_FILE))
    return problems


def has_blocking(problems: Iterable[Problem]) -> bool:
    """Whether any problem is about the files themselves (not this machine)."""
    return any(not p.machine_specific for p in problems)


__all__ = [
    "CHECKS",
    "MACHINE_KINDS",
    "Problem",
    "ProblemKind",
    "Subject",
    "check_model",
    "check_repository",
    "has_blocking",
    "run_checks",
    "spec_problems",
    "unwritten_model",
]
