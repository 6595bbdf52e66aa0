"""Resident memory of a tritonserver and its Python stub processes, sampled over time.

One helper for every memory measurement of the project (the bench's soak
scenario and the server's memory tests): find the server's processes (the
server and its descendants, i.e. one ``triton_python_backend_stub`` per model
instance), read each one's RSS, open file descriptors and the ``/dev/shm``
regions it maps, and sample all of that on a background thread.

Everything comes from ``/proc`` (Linux only; the process tree and stub
arguments through ``ds_triton.server_process.procfs``/``stubs``), so it needs
no extra package and sees processes that appear or die during a run (a
restarted stub shows up as a new pid with the same role).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ds_triton.server_process.procfs import PROC, children_of, read_argv
from ds_triton.server_process.stubs import parse_stub_argv

MB = 1024 * 1024


@dataclass(frozen=True)
class ProcessMemory:
    """One process at one moment.

    Attributes:
        pid: Process id.
        role: ``tritonserver`` or ``stub <model instance>`` (stable across restarts).
        rss_bytes: Resident set size.
        fds: Open file descriptors.
        shm_regions: ``/dev/shm`` files it maps (names only).
    """

    pid: int
    role: str
    rss_bytes: int
    fds: int
    shm_regions: frozenset[str]


@dataclass(frozen=True)
class MemorySample:
    """Every process of the server at time ``t`` (unix seconds)."""

    t: float
    processes: tuple[ProcessMemory, ...]

    @property
    def total_rss_bytes(self) -> int:
        return sum(p.rss_bytes for p in self.processes)

    @property
    def fds(self) -> int:
        return sum(p.fds for p in self.processes)

    @property
    def shm_regions(self) -> frozenset[str]:
        return frozenset().union(*(p.shm_regions for p in self.processes))

    def rss_by_role(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for process in self.processes:
            out[process.role] = out.get(process.role, 0) + process.rss_bytes
        return out


def descendants(root_pid: int) -> list[int]:
    """``root_pid`` and every live process below it (children, grandchildren, ...)."""
    if not (PROC / str(root_pid)).exists():
        return []
    found, todo = [], [root_pid]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(stat.pid for stat in children_of(pid) if not stat.is_zombie)
    return sorted(found)


def process_memory(pid: int) -> ProcessMemory | None:
    """RSS, fds and shm regions of ``pid``; ``None`` if it exited meanwhile."""
    try:
        return ProcessMemory(pid, role_of(pid), _rss_bytes(pid), _fd_count(pid), _shm_regions(pid))
    except (FileNotFoundError, ProcessLookupError):
        return None


def sample(root_pid: int) -> MemorySample:
    """One sample of the server ``root_pid`` and all of its descendants."""
    found = (process_memory(pid) for pid in descendants(root_pid))
    return MemorySample(time.time(), tuple(p for p in found if p is not None))


def role_of(pid: int) -> str:
    """``stub <model instance>`` for a Python stub (``text_embedding_0_1``), else the program name."""
    argv = read_argv(pid)
    if not argv:
        return f"pid {pid}"
    stub = parse_stub_argv(argv)
    return f"stub {stub[1]}" if stub else Path(argv[0]).name


def listening_pid(port: int) -> int | None:
    """The local process listening on TCP ``port`` (to find a server started elsewhere)."""
    inodes = set()
    for table in ("tcp", "tcp6"):
        path = PROC / "net" / table
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                inodes.add(f"socket:[{inode}]")
    if not inodes:
        return None
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            for fd in (entry / "fd").iterdir():
                if os.readlink(fd) in inodes:
                    return int(entry.name)
        except (FileNotFoundError, PermissionError, ProcessLookupError):
            continue
    return None


@dataclass
class RssSampler:
    """Samples a server's processes every ``interval_s`` on a daemon thread.

    Use as a context manager; ``samples`` holds everything taken, one sample is
    taken at start and one at stop so even a short run has both ends.
    """

    root_pid: int
    interval_s: float = 0.5
    samples: list[MemorySample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    def __enter__(self) -> RssSampler:
        self.samples.append(sample(self.root_pid))
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.samples.append(sample(self.root_pid))

    def latest(self) -> MemorySample:
        return self.samples[-1]

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.samples.append(sample(self.root_pid))


def peak_by_role(samples: Iterable[MemorySample]) -> dict[str, int]:
    """Highest RSS each role reached over ``samples``."""
    peak: dict[str, int] = {}
    for item in samples:
        for role, rss in item.rss_by_role().items():
            peak[role] = max(peak.get(role, 0), rss)
    return peak


def _rss_bytes(pid: int) -> int:
    pages = int((PROC / str(pid) / "statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def _fd_count(pid: int) -> int:
    try:
        return len(os.listdir(PROC / str(pid) / "fd"))
    except PermissionError:
        return 0


def _shm_regions(pid: int) -> frozenset[str]:
    regions = set()
    try:
        with (PROC / str(pid) / "maps").open() as maps:
            for line in maps:
                path = line.rstrip("\n").split(None, 5)[-1]
                if path.startswith("/dev/shm/"):
                    regions.add(path.removeprefix("/dev/shm/").removesuffix(" (deleted)"))
    except PermissionError:
        pass
    return frozenset(regions)
