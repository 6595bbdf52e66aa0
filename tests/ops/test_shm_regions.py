"""Leftover /dev/shm regions are removed only when no live process maps or holds them."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from ds_triton.server_process.shm import regions_in_use, remove_unused_regions

PREFIX = "triton_python_backend_shm_region_test_"
HOLDER = """
import mmap, sys, time
with open(sys.argv[1], "r+b") as f:
    m = mmap.mmap(f.fileno(), 0)
print("mapped", flush=True)
time.sleep(60)
"""


def test_only_regions_no_process_maps_are_removed(tmp_path: Path) -> None:
    held, stale, other = (tmp_path / f"{PREFIX}held", tmp_path / f"{PREFIX}stale", tmp_path / "not_a_region")
    for path in (held, stale, other):
        path.write_bytes(b"\0" * 4096)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(held)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "mapped"
        assert held.name in regions_in_use(tmp_path)
        removed = remove_unused_regions(prefix=PREFIX, shm_dir=tmp_path)
        assert removed == [stale.name]
        assert held.exists() and other.exists() and not stale.exists()
    finally:
        holder.kill()
        holder.wait()
    assert remove_unused_regions(prefix=PREFIX, shm_dir=tmp_path) == [held.name]


def test_young_regions_are_spared_and_names_narrow_the_choice(tmp_path: Path) -> None:
    young, listed = tmp_path / f"{PREFIX}young", tmp_path / f"{PREFIX}listed"
    young.write_bytes(b"x")
    listed.write_bytes(b"x")
    old = time.time() - 3600
    os.utime(listed, (old, old))  # ctime still says now: only min_age_s=0 may take it
    assert remove_unused_regions(prefix=PREFIX, shm_dir=tmp_path, min_age_s=60) == []
    assert remove_unused_regions(prefix=PREFIX, names=[listed.name], shm_dir=tmp_path) == [listed.name]
    assert young.exists()
