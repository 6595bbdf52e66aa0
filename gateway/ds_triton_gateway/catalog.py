"""The models the gateway can name: the repository's folders, their task and their tokenizer.

Names and tasks come from each model's spec (``<model>/1/model.json``), the same
file the replicas load; the repository is re-read when a name is not known yet
or its spec changed, so a model added with ``ds-triton add-model`` is served
without restarting the gateway. Readiness is Triton's, asked through the client.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from ds_triton.errors import SpecError
from ds_triton.spec import SPEC_FILENAME, ModelSpec
from ds_triton_gateway.text import ModelText

LOG = logging.getLogger(__name__)

VERSION = "1"
RESCAN_SECONDS = 2.0


@dataclass(frozen=True)
class ModelEntry:
    """One model folder of the repository."""

    name: str
    spec: ModelSpec
    version_dir: Path
    modified: float  # the spec's mtime: a changed spec is a new entry (new tokenizer)

    @property
    def task(self) -> str:
        return self.spec.task


class Catalog:
    """The repository's models by name, each with its tokenizer tools loaded once."""

    def __init__(self, repository: Path) -> None:
        self.repository = repository
        self._entries: dict[str, ModelEntry] = {}
        self._scanned = 0.0
        self._texts: dict[tuple[str, float], ModelText] = {}
        self._loading: dict[tuple[str, float], asyncio.Lock] = {}

    def entries(self) -> list[ModelEntry]:
        """Every model with a valid spec, by name (the folder is re-read every few seconds)."""
        self._rescan(force=False)
        return sorted(self._entries.values(), key=lambda e: e.name)

    def get(self, name: str) -> ModelEntry | None:
        """The model called ``name``, or None when the repository has no such model."""
        entry = self._entries.get(name)
        if entry is None or time.monotonic() - self._scanned > RESCAN_SECONDS:
            self._rescan(force=entry is None)
            entry = self._entries.get(name)
        return entry

    async def text(self, entry: ModelEntry) -> ModelText:
        """The model's tokenizer tools, loaded in a thread on first use."""
        key = (entry.name, entry.modified)
        if key in self._texts:
            return self._texts[key]
        lock = self._loading.setdefault(key, asyncio.Lock())
        async with lock:
            if key not in self._texts:
                loaded = await asyncio.to_thread(ModelText.load, entry.spec, entry.version_dir)
                self._texts = {k: v for k, v in self._texts.items() if k[0] != entry.name}
                self._texts[key] = loaded
        return self._texts[key]

    async def warm(self) -> None:
        """Load every model's tokenizer now (at start), logging the ones that fail."""
        for entry in self.entries():
            try:
                await self.text(entry)
            except Exception as exc:  # a broken checkpoint must not stop the others
                LOG.warning("%s: tokenizer not loaded: %s", entry.name, exc)

    def _rescan(self, force: bool) -> None:
        now = time.monotonic()
        if not force and now - self._scanned < RESCAN_SECONDS:
            return
        self._scanned = now
        found: dict[str, ModelEntry] = {}
        if self.repository.is_dir():
            for folder in sorted(self.repository.iterdir()):
                entry = self._read(folder)
                if entry is not None:
                    found[entry.name] = entry
        self._entries = found

    def _read(self, folder: Path) -> ModelEntry | None:
        spec_path = folder / VERSION / SPEC_FILENAME
        try:
            modified = spec_path.stat().st_mtime
        except OSError:
            return None
        known = self._entries.get(folder.name)
        if known is not None and known.modified == modified:
            return known
        try:
            spec = ModelSpec.load(spec_path)
        except SpecError as exc:
            LOG.warning("%s: not served: %s", folder.name, exc)
            return None
        if spec.name != folder.name:
            LOG.warning("%s: not served: its spec names %r", folder.name, spec.name)
            return None
        return ModelEntry(spec.name, spec, folder / VERSION, modified)
