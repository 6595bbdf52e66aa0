"""Create (or replace) a model folder from a spec, validated before anything is written.

A new folder is assembled outside the repository and moved in with one rename,
so a server polling the repository loads either nothing or the complete model.
Replacing an existing model rewrites its files one by one (each atomically), so
Triton reloads it in place.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ds_triton.errors import SpecError
from ds_triton.repository.checks import Problem, check_config, check_spec
from ds_triton.repository.layout import SHIM_SOURCE, ModelFolder
from ds_triton.repository.machine import Machine
from ds_triton.repository.render import config_text, render_config
from ds_triton.repository.writer import write_text_atomic
from ds_triton.spec import BatchingSpec, ModelSpec


class AddModelError(SpecError):
    """The model was not added; ``problems`` lists why when the checker found them."""

    def __init__(self, message: str, problems: list[Problem] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


@dataclass(frozen=True)
class AddedModel:
    """A model folder now in the repository, and what will stop it loading on this machine."""

    folder: ModelFolder
    replaced: bool
    warnings: list[Problem]


def add_model(repository: Path, spec: ModelSpec, machine: Machine, *, replace: bool = False) -> AddedModel:
    """Write ``repository/<spec.name>/`` (config.pbtxt, 1/model.json, 1/model.py).

    Everything is checked before a file is written: the spec, the checkpoint (a
    relative path is relative to the model's version folder, as at load time),
    and the rendered config against Triton's schema and the task's interface.

    Args:
        repository: the model repository folder (created if missing).
        spec: the model.
        machine: GPUs that ``gpus: "all"`` renders to, and cores to check against.
        replace: overwrite an existing model of that name (Triton reloads it).

    Raises:
        AddModelError: invalid spec, existing model without ``replace``, or any
            problem the checker finds. Problems that only concern this machine (a
            GPU id it lacks, too few cores) are returned as warnings instead: the
            repository may be meant for another machine.
    """
    spec.validate()
    repository = Path(repository)
    target = ModelFolder(repository / spec.name)
    if target.root.exists() and not replace:
        raise AddModelError(f"{target.root} already exists; pass replace (--force) to overwrite it")
    problems: list[Problem] = []
    checkpoint = check_spec(spec, target.name, target.version_dir, problems)
    config = None
    if checkpoint is not None:
        dimension = checkpoint.hidden_size if spec.task == "embedding" else None
        config = render_config(spec, embedding_dimension=dimension, gpu_ids=machine.gpu_ids)
        check_config(config, target.name, machine, spec, checkpoint, problems)
    blocking = [p for p in problems if not p.machine_specific]
    if blocking or config is None:
        details = "\n".join(f"  {p}" for p in blocking)
        raise AddModelError(f"model {spec.name!r} not added:\n{details}", blocking)
    files = {
        target.spec_path: spec_json(spec),
        target.shim_path: SHIM_SOURCE,
        target.config_path: config_text(config),  # parses back with Triton's schema or raises
    }
    replaced = target.root.exists()
    if replaced:
        _replace_files(files)
    else:
        _create_folder(repository, target, files)
    return AddedModel(target, replaced, [p for p in problems if p.machine_specific])


def spec_json(spec: ModelSpec) -> str:
    """``model.json`` text; a generation spec leaves out the batching section it cannot use."""
    data = spec.to_dict()
    if spec.task == "generation" and spec.batching == BatchingSpec():
        del data["batching"]
    return json.dumps(data, indent=2) + "\n"


def _create_folder(repository: Path, target: ModelFolder, files: dict[Path, str]) -> None:
    """Assemble the folder outside the repository, then move it in with one rename."""
    repository.mkdir(parents=True, exist_ok=True)
    with _staging_area(repository) as staging:
        staged = staging / target.name
        for path, text in files.items():
            write_text_atomic(staged / path.relative_to(target.root), text)
        try:
            staged.rename(target.root)  # atomic: a poller sees all of it or nothing
        except OSError:  # the staging area is on another file system
            shutil.copytree(staged, target.root)


def _replace_files(files: dict[Path, str]) -> None:
    # Spec first, config last: a reload triggered in between loads the new spec,
    # and the config change that follows triggers the final reload.
    for path, text in files.items():
        if not path.is_file() or path.read_text() != text:
            write_text_atomic(path, text)


@contextmanager
def _staging_area(repository: Path) -> Iterator[Path]:
    """A temporary folder on the repository's file system but outside it."""
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{repository.name}-add-", dir=repository.parent))
    except OSError:  # parent not writable: the rename becomes a copy
        staging = Path(tempfile.mkdtemp(prefix="ds-triton-add-"))
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)
