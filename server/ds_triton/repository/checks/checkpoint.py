"""The checkpoint a spec names: present, readable, inside the repository, of a usable architecture."""

from __future__ import annotations

from ds_triton.errors import SpecError
from ds_triton.repository.checkpoint import inspect_checkpoint
from ds_triton.repository.checks.subject import SPEC_FILE, Subject


def check_checkpoint(model: Subject) -> None:
    assert model.spec is not None
    try:
        # A relative checkpoint is relative to the version folder, as at load time.
        model.checkpoint = inspect_checkpoint(model.spec, model.folder.version_dir)
    except SpecError as exc:  # CheckpointError, or a package: checkpoint not installed
        model.report("checkpoint", str(exc), where=SPEC_FILE)
