"""The result as a ``model.json`` patch: printed always, written, rendered and checked with ``--apply``.

Only the keys the tuner changed are touched in the user's file (its other
keys, and sections it leaves to their defaults, stay as they are), so the
patch reads as the tuning decision and nothing else.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ds_triton.repository.checks import check_model
from ds_triton.repository.layout import ModelFolder
from ds_triton.repository.machine import Machine
from ds_triton.repository.writer import render_folder, write_rendered, write_text_atomic
from ds_triton.spec import ModelSpec


@dataclass(frozen=True)
class SpecPatch:
    """The new ``model.json`` text, its diff against the file, and the changed keys."""

    path: Path
    text: str
    diff: str
    changes: dict[str, tuple[Any, Any]]

    @property
    def empty(self) -> bool:
        return not self.changes


def spec_patch(path: Path, base: ModelSpec, new: ModelSpec, shown_as: str | None = None) -> SpecPatch:
    """The patch turning ``path`` (holding ``base``) into ``new``."""
    current = path.read_text()
    raw = json.loads(current)
    changes = _changed(base.to_dict(), new.to_dict())
    for dotted, (_, value) in changes.items():
        *sections, key = dotted.split(".")
        node = raw
        for section in sections:
            node = node.setdefault(section, {})
        node[key] = list(value) if isinstance(value, tuple) else value
    text = json.dumps(raw, indent=2) + "\n"
    name = shown_as or str(path)
    diff = "".join(difflib.unified_diff(current.splitlines(keepends=True), text.splitlines(keepends=True),
                                        fromfile=f"a/{name}", tofile=f"b/{name}"))
    return SpecPatch(path, text, diff, changes)


def apply_patch(patch: SpecPatch, folder: ModelFolder, machine: Machine) -> list[str]:
    """Write the new ``model.json``, render ``config.pbtxt``; returns ``ds-triton check``'s problems."""
    write_text_atomic(patch.path, patch.text)
    write_rendered(render_folder(folder, machine.gpu_ids))
    return [str(problem) for problem in check_model(folder, machine)]


def _changed(before: dict[str, Any], after: dict[str, Any], prefix: str = "") -> dict[str, tuple[Any, Any]]:
    out: dict[str, tuple[Any, Any]] = {}
    for key, value in after.items():
        old = before.get(key)
        if isinstance(value, dict) and isinstance(old, dict):
            out.update(_changed(old, value, f"{prefix}{key}."))
        elif value != old:
            out[f"{prefix}{key}"] = (old, value)
    return out
