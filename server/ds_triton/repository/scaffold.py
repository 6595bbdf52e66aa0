"""Create (or replace) a model folder from a spec, validated before anything is written.

A new folder is assembled outside the repository and moved in with one rename,
so a server polling the repository loads either nothing or the complete model.
Replacing an existing model rewrites its files one by one (each atomically), so
Triton reloads it in place.

A checkpoint outside the repository (and outside the folders the server allows,
see ``ds_triton.checkpoint_files``) is imported: copied into the model's
``1/checkpoint/`` (hard links where the file system allows, so no second copy
of the weights), and ``model.json`` names it relative to the version folder.
The model folder is then self-contained: it can be reviewed, mounted into a
container or moved, and the server reads nothing outside the repository.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tritonclient.grpc import model_config_pb2 as mc

from ds_triton.checkpoint_files import PACKAGE_PREFIX, CheckpointError, resolve_checkpoint
from ds_triton.errors import SpecError
from ds_triton.repository.checks import Problem, run_checks, unwritten_model
from ds_triton.repository.layout import SHIM_SOURCE, ModelFolder
from ds_triton.repository.machine import Machine
from ds_triton.repository.render import config_text, render_config
from ds_triton.repository.writer import write_text_atomic
from ds_triton.spec import BatchingSpec, ModelSpec

IMPORTED_CHECKPOINT = "checkpoint"


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
    imported_from: Path | None = None  # the checkpoint copied into 1/checkpoint/


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
    replaced = target.root.exists()
    if replaced and not replace:
        raise AddModelError(f"{target.root} already exists; pass replace (--force) to overwrite it")
    repository.mkdir(parents=True, exist_ok=True)
    with _staging_area(repository) as staging:
        staged = ModelFolder(staging / spec.name)
        source = checkpoint_to_import(spec, target)
        if source is not None:
            _copy_checkpoint(source, staged.version_dir / IMPORTED_CHECKPOINT)
            spec = dataclasses.replace(spec, checkpoint=IMPORTED_CHECKPOINT)
        # Checked where its checkpoint is: the staged copy when imported, else in place.
        config, problems = _checked_config(staged if source else target, spec, machine)
        files = {
            target.spec_path: spec_json(spec),
            target.shim_path: SHIM_SOURCE,
            target.config_path: config_text(config),  # parses back with Triton's schema or raises
        }
        if replaced:
            if source is not None:
                imported = staged.version_dir / IMPORTED_CHECKPOINT
                _swap_folder(imported, target.version_dir / IMPORTED_CHECKPOINT)
            _replace_files(files)
        else:
            _create_folder(staged, target, files)
    return AddedModel(target, replaced, [p for p in problems if p.machine_specific], source)


def checkpoint_to_import(spec: ModelSpec, target: ModelFolder) -> Path | None:
    """The folder to copy into the model, when its checkpoint may not be read where it is."""
    if spec.checkpoint.startswith(PACKAGE_PREFIX):
        return None
    try:
        resolve_checkpoint(spec.checkpoint, target.version_dir)
        return None
    except CheckpointError:
        path = Path(spec.checkpoint).expanduser()
        path = (path if path.is_absolute() else target.version_dir / path).resolve()
        return path if path.is_dir() else None  # a missing folder is reported by the check


def _checked_config(
    folder: ModelFolder, spec: ModelSpec, machine: Machine
) -> tuple[mc.ModelConfig, list[Problem]]:
    """The rendered config of a model about to be written, and its problems (none blocking)."""
    model = unwritten_model(folder, spec, machine)
    if model.checkpoint is not None:
        dimension = model.checkpoint.hidden_size if spec.task == "embedding" else None
        model.config = render_config(spec, embedding_dimension=dimension, gpu_ids=machine.gpu_ids)
        run_checks(model)
    blocking = [p for p in model.problems if not p.machine_specific]
    if blocking or model.config is None:
        details = "\n".join(f"  {p}" for p in blocking)
        raise AddModelError(f"model {spec.name!r} not added:\n{details}", blocking)
    return model.config, model.problems


def spec_json(spec: ModelSpec) -> str:
    """``model.json`` text; a generation spec leaves out the batching section it cannot use."""
    data = spec.to_dict()
    if spec.task == "generation" and spec.batching == BatchingSpec():
        del data["batching"]
    return json.dumps(data, indent=2) + "\n"


def _create_folder(staged: ModelFolder, target: ModelFolder, files: dict[Path, str]) -> None:
    """Assemble the folder outside the repository, then move it in with one rename."""
    for path, text in files.items():
        write_text_atomic(staged.root / path.relative_to(target.root), text)
    try:
        staged.root.rename(target.root)  # atomic: a poller sees all of it or nothing
    except OSError:  # the staging area is on another file system
        shutil.copytree(staged.root, target.root)


def _copy_checkpoint(source: Path, destination: Path) -> None:
    """Copy a checkpoint folder, following links, hard-linking files where possible."""
    shutil.copytree(source, destination, copy_function=_link_or_copy)


def _link_or_copy(source: str, destination: str) -> None:
    try:
        os.link(os.path.realpath(source), destination)
    except OSError:  # another file system, or links not allowed
        shutil.copy2(source, destination)


def _swap_folder(new: Path, current: Path) -> None:
    """Put ``new`` where ``current`` is; the old folder is removed once the new one is in place."""
    old = current.with_name(f".{current.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if current.exists():
        current.rename(old)
    current.parent.mkdir(parents=True, exist_ok=True)
    new.rename(current)
    shutil.rmtree(old, ignore_errors=True)


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
