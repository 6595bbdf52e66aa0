"""The Python-backend stub processes of one tritonserver, found through ``/proc``.

Triton 2.51 starts each model instance as ``bash -c "exec triton_python_backend_stub
<repo>/<model>/<version>/model.py <shm region> <default size> <growth size> <parent pid>
<backend dir> <ipc handle> <instance name> <runtime dir>"`` (python_backend
``src/stub_launcher.cc``), so a stub's arguments name its model, its instance and
its ``/dev/shm`` region. A stub that is only checking the model's config while the
model loads (Triton's auto-complete step) is named after the model itself, not an
instance, and exits on its own: it is not an instance stub.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ds_triton.server_process.procfs import PROC, ProcessStat, children_of, read_argv

STUB_BINARY = "triton_python_backend_stub"


@dataclass(frozen=True)
class Stub:
    """One instance's stub process."""

    pid: int
    start_ticks: int
    model: str
    instance: str
    shm_region: str

    def same_process(self, stat: ProcessStat | None) -> bool:
        """Whether ``stat`` is still this process (and not a later one given the same pid)."""
        return stat is not None and stat.pid == self.pid and stat.start_ticks == self.start_ticks


def parse_stub_argv(argv: list[str]) -> tuple[str, str, str] | None:
    """``(model, instance, shm region)`` from a stub's arguments; None if not an instance stub."""
    if len(argv) < 9 or Path(argv[0]).name != STUB_BINARY:
        return None
    model_path = Path(argv[1])  # <repo>/<model>/<version>/model.py
    if len(model_path.parts) < 3:
        return None
    model = model_path.parts[-3]
    instance = argv[8]
    if instance == model:  # the auto-complete stub of a model being loaded
        return None
    return model, instance, argv[2]


def find_stubs(server_pid: int, proc: Path = PROC) -> list[Stub]:
    """The live instance stubs whose parent is ``server_pid``."""
    stubs = []
    for stat in children_of(server_pid, proc):
        if stat.is_zombie:
            continue
        parsed = parse_stub_argv(read_argv(stat.pid, proc))
        if parsed is not None:
            model, instance, region = parsed
            stubs.append(Stub(stat.pid, stat.start_ticks, model, instance, region))
    return stubs
