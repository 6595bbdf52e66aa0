"""The Python backend's ``/dev/shm`` regions: which are in use, and removing the rest.

tritonserver creates one region per stub and removes it when the stub ends
normally. When tritonserver itself dies the regions stay behind. Other servers
may run on the same machine at the same time, so a region is only removed when
no live process maps it or holds it open.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from pathlib import Path

from ds_triton.server_process.procfs import PROC, pids

LOG = logging.getLogger(__name__)

SHM_DIR = Path("/dev/shm")
TRITON_REGION_PREFIX = "triton_python_backend_shm_region_"


def regions_in_use(shm_dir: Path = SHM_DIR, proc: Path = PROC) -> set[str]:
    """Names of files in ``shm_dir`` that some live process maps or has open."""
    in_use: set[str] = set()
    mapped_prefix = f"{shm_dir}/"
    for pid in pids(proc):
        base = proc / str(pid)
        try:
            with (base / "maps").open() as maps:
                for line in maps:
                    start = line.find(mapped_prefix)
                    if start >= 0:
                        path = line[start:].rstrip("\n").removesuffix(" (deleted)")
                        in_use.add(Path(path).name)
        except OSError:
            pass  # gone, or not ours to read
        try:
            for fd in (base / "fd").iterdir():
                try:
                    target = str(fd.readlink())
                except OSError:
                    continue
                if target.startswith(mapped_prefix):
                    in_use.add(Path(target).name)
        except OSError:
            pass
    return in_use


def remove_unused_regions(
    prefix: str = TRITON_REGION_PREFIX,
    names: Iterable[str] | None = None,
    min_age_s: float = 0.0,
    shm_dir: Path = SHM_DIR,
    proc: Path = PROC,
) -> list[str]:
    """Remove regions that start with ``prefix`` (or are listed in ``names``) and nobody uses.

    Args:
        prefix: Only regions whose name starts with it are candidates.
        names: If given, only these region names are candidates.
        min_age_s: Spare regions younger than this (another server may be creating one:
            tritonserver maps a region right after creating it, but not atomically).
        shm_dir: Where the regions live.
        proc: The ``/proc`` to read mappings from.

    Returns:
        The names removed.
    """
    wanted = set(names) if names is not None else None
    candidates = [
        path
        for path in (shm_dir.glob(f"{prefix}*") if shm_dir.is_dir() else [])
        if wanted is None or path.name in wanted
    ]
    if not candidates:
        return []
    in_use = regions_in_use(shm_dir, proc)
    now = time.time()
    removed = []
    for path in candidates:
        if path.name in in_use:
            continue
        try:
            if now - path.stat().st_ctime < min_age_s:
                continue
            path.unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            LOG.warning("could not remove %s: %s", path, exc)
            continue
        removed.append(path.name)
    return removed
