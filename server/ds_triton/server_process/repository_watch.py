"""Live loading for ``ds-triton serve``: which model folders appeared, changed or went away.

``ds-triton serve`` runs Triton with explicit model control, because Triton 2.51
refuses its repository API (load/unload) in poll mode and the supervisor needs it
to take a crashed model out of service. This watcher gives back what poll mode
did: a folder that appears or changes is loaded (or reloaded), a folder that goes
away is unloaded. A folder is acted on once it has been unchanged for one poll,
so a model copied in by hand is not loaded half-written.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ds_triton.repository.layout import CONFIG_FILENAME

Fingerprint = tuple[tuple[str, int, int], ...]  # (relative path, mtime ns, size) of every file


@dataclass(frozen=True)
class Change:
    model: str
    action: Literal["load", "unload"]
    why: str  # "added", "changed", "removed"


def fingerprint(folder: Path) -> Fingerprint:
    """Every file under ``folder`` with its mtime and size (bytecode caches left out)."""
    entries = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in files:
            path = Path(root) / name
            try:
                stat = path.lstat()
            except OSError:
                continue
            entries.append((str(path.relative_to(folder)), stat.st_mtime_ns, stat.st_size))
    return tuple(sorted(entries))


def scan(repository: Path) -> dict[str, Fingerprint]:
    """Fingerprints of the repository's model folders (visible folders with a config.pbtxt)."""
    found = {}
    try:
        folders = sorted(Path(repository).iterdir())
    except OSError:
        return {}
    for folder in folders:
        if folder.is_dir() and not folder.name.startswith(".") and (folder / CONFIG_FILENAME).is_file():
            found[folder.name] = fingerprint(folder)
    return found


class RepositoryWatcher:
    """Compares the repository with what was last handed to Triton."""

    def __init__(self, repository: Path) -> None:
        self.repository = Path(repository)
        self._handed: dict[str, Fingerprint] = {}
        self._previous: dict[str, Fingerprint] = {}

    def baseline(self) -> None:
        """Record the repository as Triton loads it at start (``--load-model=*``)."""
        self._handed = scan(self.repository)
        self._previous = dict(self._handed)

    def changes(self) -> list[Change]:
        """What to load or unload since the last call."""
        current = scan(self.repository)
        found = []
        for model, print_ in current.items():
            settled = self._previous.get(model) == print_
            if settled and self._handed.get(model) != print_:
                found.append(Change(model, "load", "changed" if model in self._handed else "added"))
                self._handed[model] = print_
        for model in sorted(set(self._handed) - set(current)):
            found.append(Change(model, "unload", "removed"))
            del self._handed[model]
        self._previous = current
        return found
