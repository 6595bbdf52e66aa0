"""Write rendered configs into model folders, atomically.

A server in poll mode may rescan the repository at any moment, so a file is
written beside its final name and renamed over it: Triton sees the old file or
the new one, never half of one.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ds_triton.errors import SpecError
from ds_triton.repository.checkpoint import inspect_checkpoint
from ds_triton.repository.layout import ModelFolder, model_folders
from ds_triton.repository.render import config_text, render_config
from ds_triton.spec import ModelSpec

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class Rendered:
    """A model's config as it is on disk and as its spec renders it."""

    folder: ModelFolder
    current: str | None
    text: str

    @property
    def changed(self) -> bool:
        return self.current != self.text


def render_folder(folder: ModelFolder, gpu_ids: Sequence[int] = ()) -> Rendered:
    """Render ``folder``'s ``model.json`` (reading the checkpoint's hidden size for embeddings).

    Raises:
        SpecError: the spec is invalid or (embeddings) its checkpoint is unusable.
    """
    spec = ModelSpec.load(folder.spec_path)
    if spec.name != folder.name:
        raise SpecError(f"{folder.spec_path}: name {spec.name!r} differs from its folder {folder.name!r}")
    return render_spec(folder, spec, gpu_ids)


def render_spec(folder: ModelFolder, spec: ModelSpec, gpu_ids: Sequence[int] = ()) -> Rendered:
    """Render ``spec`` for ``folder`` (see ``render_folder``)."""
    dimension = (
        inspect_checkpoint(spec, folder.version_dir).hidden_size if spec.task == "embedding" else None
    )
    text = config_text(render_config(spec, embedding_dimension=dimension, gpu_ids=gpu_ids))
    current = folder.config_path.read_text() if folder.config_path.is_file() else None
    return Rendered(folder, current, text)


def write_rendered(rendered: Rendered) -> bool:
    """Write a changed config; return whether the file changed."""
    if not rendered.changed:
        return False
    write_text_atomic(rendered.folder.config_path, rendered.text)
    return True


def write_text_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` in one rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def resolve_gpus_for_serving(repository: Path, gpu_ids: Sequence[int]) -> list[str]:
    """Re-render every ``gpus: "all"`` GPU model for this machine's GPUs before serving.

    With no GPUs nothing is touched (a repository prepared here for a GPU server
    stays as it was). A model whose spec cannot be rendered is left alone: Triton
    will report it UNAVAILABLE with its own error.

    Returns:
        The names of the models whose ``config.pbtxt`` was rewritten.
    """
    if not gpu_ids:
        return []
    changed = []
    for folder in model_folders(repository):
        if not folder.spec_path.is_file():
            continue  # not one of ours; `check` reports it
        try:
            spec = ModelSpec.load(folder.spec_path)
            if spec.deployment.device != "gpu" or spec.deployment.gpus != "all":
                continue
            rendered = render_spec(folder, spec, gpu_ids)
        except SpecError as exc:
            LOG.warning("%s: not re-rendered for this machine's GPUs: %s", folder.name, exc)
            continue
        if write_rendered(rendered):
            changed.append(folder.name)
    return changed
