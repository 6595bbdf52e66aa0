"""What ``/proc`` says about a process: parent, group, state, memory and, once dead, how it ended.

The supervisor watches processes it did not start (tritonserver's Python stubs),
so it cannot ``waitpid`` them; ``/proc/<pid>/stat`` still shows a dead child
that its parent has not reaped yet (state ``Z``) together with its exit status.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


@dataclass(frozen=True)
class ProcessStat:
    """The fields of ``/proc/<pid>/stat`` the supervisor needs."""

    pid: int
    state: str
    ppid: int
    pgid: int
    start_ticks: int  # start time since boot; tells a reused pid from the original process
    exit_status: int  # waitpid(2)-style status; meaningful only for a zombie

    @property
    def is_zombie(self) -> bool:
        return self.state in ("Z", "X")


def read_stat(pid: int, proc: Path = PROC) -> ProcessStat | None:
    """The process's stat, or None when it no longer exists."""
    try:
        text = (proc / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = text[text.rfind(")") + 2 :].split()
    return ProcessStat(
        pid=pid,
        state=fields[0],
        ppid=int(fields[1]),
        pgid=int(fields[2]),
        start_ticks=int(fields[19]),
        exit_status=int(fields[49]) if len(fields) > 49 else 0,
    )


def read_argv(pid: int, proc: Path = PROC) -> list[str]:
    """The process's arguments (empty for a zombie or a process that is gone)."""
    try:
        raw = (proc / str(pid) / "cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def read_status(pid: int | str = "self", proc: Path = PROC) -> dict[str, int]:
    """The byte-valued lines of ``/proc/<pid>/status`` (VmRSS, VmHWM, RssAnon, ...), in bytes.

    Raises:
        OSError: The process does not exist (any more).
    """
    values = {}
    for line in (proc / str(pid) / "status").read_text().splitlines():
        key, _, rest = line.partition(":")
        fields = rest.split()
        if len(fields) == 2 and fields[1] == "kB":
            values[key] = int(fields[0]) * 1024
    return values


def pids(proc: Path = PROC) -> Iterator[int]:
    for entry in proc.iterdir():
        if entry.name.isdigit():
            yield int(entry.name)


def processes(proc: Path = PROC) -> Iterator[ProcessStat]:
    """Every process that has not been reaped, zombies included."""
    for pid in pids(proc):
        stat = read_stat(pid, proc)
        if stat is not None:
            yield stat


def children_of(parent: int, proc: Path = PROC) -> list[ProcessStat]:
    """Every live or zombie process whose parent is ``parent``."""
    return [stat for stat in processes(proc) if stat.ppid == parent]


def group_members(pgid: int, proc: Path = PROC) -> list[ProcessStat]:
    """Every process in process group ``pgid`` that has not been reaped."""
    return [stat for stat in processes(proc) if stat.pgid == pgid]


def describe_exit(status: int) -> str:
    """``waitpid`` status in words: "killed by SIGKILL", "exit code 1"."""
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        return f"killed by {name}"
    if os.WIFEXITED(status):
        return f"exit code {os.WEXITSTATUS(status)}"
    return "ended"
