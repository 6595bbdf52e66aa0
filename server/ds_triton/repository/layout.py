"""Where things live in a model folder, and the shim every folder shares.

A model folder is ``<repository>/<name>/`` holding ``config.pbtxt`` and version
``1/`` with ``model.json`` (the spec) and ``model.py`` (a three-line re-export of
the shared ``TritonPythonModel``). Nothing else is model-specific.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ds_triton.spec import SPEC_FILENAME

CONFIG_FILENAME = "config.pbtxt"
VERSION = "1"
SHIM_FILENAME = "model.py"

# Byte-identical in every model folder: Triton needs a model.py per version, the
# code lives in the ds_triton package.
SHIM_SOURCE = '''"""Triton entry point; the shared ds_triton package serves this folder's model.json."""

from ds_triton.backend.entrypoint import TritonPythonModel

__all__ = ["TritonPythonModel"]
'''


@dataclass(frozen=True)
class ModelFolder:
    """Paths of one model folder of a repository."""

    root: Path

    @property
    def name(self) -> str:
        return self.root.name

    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_FILENAME

    @property
    def version_dir(self) -> Path:
        return self.root / VERSION

    @property
    def spec_path(self) -> Path:
        return self.version_dir / SPEC_FILENAME

    @property
    def shim_path(self) -> Path:
        return self.version_dir / SHIM_FILENAME


def model_folders(repository: Path) -> list[ModelFolder]:
    """Every folder of ``repository`` Triton would treat as a model, sorted by name.

    Hidden folders included: Triton tries to load those too (which is why
    ``add-model`` assembles a model outside the repository, then moves it in).
    """
    return [ModelFolder(path) for path in sorted(Path(repository).iterdir()) if path.is_dir()]
