"""A fake ``/proc`` tree for supervisor tests: processes are files, deaths are edits."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

STUB = "/run/backends/python/triton_python_backend_stub"


class FakeProc:
    """Writes ``<root>/<pid>/stat`` and ``cmdline`` the way Linux lays them out."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def add(self, pid: int, ppid: int, argv: list[str], start: int = 100, state: str = "S",
            exit_status: int = 0) -> None:
        folder = self.root / str(pid)
        folder.mkdir(exist_ok=True)
        name = Path(argv[0]).name[:15] if argv else "x"
        # fields 3.. of stat(5): state ppid pgrp ... starttime is field 22, exit_code field 52
        fields = ["0"] * 50
        fields[0], fields[1], fields[2] = state, str(ppid), str(ppid)
        fields[19], fields[49] = str(start), str(exit_status)
        (folder / "stat").write_text(f"{pid} ({name}) {' '.join(fields)}\n")
        (folder / "cmdline").write_bytes(b"".join(a.encode() + b"\0" for a in argv) if state != "Z" else b"")

    def add_stub(self, pid: int, server: int, model: str, index: int, start: int = 100) -> None:
        argv = [STUB, f"/repo/{model}/1/model.py", f"triton_python_backend_shm_region_x_{pid}", "1048576",
                "1048576", str(server), "/run/backends/python", "336", f"{model}_0_{index}", "DEFAULT"]
        self.add(pid, server, argv, start=start)

    def die(self, pid: int, status: int) -> None:
        """The process ended with waitpid status ``status`` and was not reaped (a zombie)."""
        stat = (self.root / str(pid) / "stat").read_text()
        head, rest = stat[: stat.rfind(")") + 2], stat[stat.rfind(")") + 2 :].split()
        rest[0], rest[49] = "Z", str(status)
        (self.root / str(pid) / "stat").write_text(head + " ".join(rest) + "\n")
        (self.root / str(pid) / "cmdline").write_bytes(b"")

    def reap(self, pid: int) -> None:
        shutil.rmtree(self.root / str(pid), ignore_errors=True)


def signalled(signum: int) -> int:
    """The waitpid status of a process killed by ``signum``."""
    return signum


def exited(code: int) -> int:
    return code << 8


assert os.WIFSIGNALED(signalled(9)) and os.WIFEXITED(exited(1))
