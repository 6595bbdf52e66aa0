"""Two real `ds-triton serve` replicas behind the project's nginx, watched by its Prometheus."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ds_triton.server_process.procfs import children_of, group_members, read_argv, read_stat
from tests.deploy.stack import (
    Nginx,
    Prometheus,
    ReplicaPorts,
    Tls,
    make_tls,
    running_nginx,
    running_prometheus,
)
from tests.serve_process import ROOT, ServeProcess, serving

MODEL_REPOSITORY = ROOT / "model_repository"


@dataclass
class Replica:
    serve: ServeProcess
    ports: ReplicaPorts
    group: ProcessGroup | None = None

    @property
    def tritonserver_pid(self) -> int:
        return self.serve.tritonserver_pid()


def tritonserver_child(pid: int) -> int:
    """The tritonserver child of a `ds-triton serve` process."""
    for stat in children_of(pid):
        argv = read_argv(stat.pid)
        if argv and Path(argv[0]).name == "tritonserver":
            return stat.pid
    raise AssertionError(f"ds-triton serve ({pid}) has no tritonserver child")


@dataclass
class ProcessGroup:
    """What one process group held: its processes and the /dev/shm files they mapped.

    Recorded while they run, so that cleanup touches only them, never a process
    that later reuses a pid or a region of another server on this machine.
    """

    pgid: int
    processes: dict[int, int] = field(default_factory=dict)  # pid -> start time
    regions: set[Path] = field(default_factory=set)

    def record(self) -> None:
        for stat in group_members(self.pgid):
            self.processes[stat.pid] = stat.start_ticks
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{stat.pid}/maps").read_text().splitlines():
                    path = line.split(maxsplit=5)[-1]
                    if path.startswith("/dev/shm/"):
                        self.regions.add(Path(path.removesuffix(" (deleted)")))

    def reap(self) -> None:
        for pid, started in self.processes.items():
            stat = read_stat(pid)
            if stat is not None and stat.start_ticks == started:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        for region in self.regions:
            region.unlink(missing_ok=True)


@contextlib.contextmanager
def reaped(replica: Replica) -> Iterator[ProcessGroup]:
    """Whatever happens to the replica, none of its stubs or /dev/shm regions outlive the test."""
    group = ProcessGroup(replica.tritonserver_pid)  # tritonserver leads its own group
    group.record()
    try:
        yield group
    finally:
        group.reap()


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    return make_tls(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Replica]]:
    """Two `ds-triton serve` on the shipped models, started side by side."""
    contexts = [serving(MODEL_REPOSITORY, tmp_path_factory.mktemp(f"replica{i}")) for i in range(2)]
    with contextlib.ExitStack() as stack, ThreadPoolExecutor(2) as pool:
        started = list(pool.map(stack.enter_context, contexts))
        replicas = [
            Replica(serve, ReplicaPorts(
                serve.ports.http, serve.ports.grpc, serve.ports.metrics, serve.supervisor_metrics_port
            ))
            for serve in started
        ]
        for replica in replicas:
            replica.group = stack.enter_context(reaped(replica))
        yield replicas


@pytest.fixture(scope="module")
def nginx(replicas: list[Replica], tls: Tls) -> Iterator[Nginx]:
    with running_nginx([r.ports for r in replicas], tls) as nginx:
        yield nginx


@pytest.fixture(scope="module")
def prometheus(replicas: list[Replica], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    with running_prometheus([r.ports for r in replicas], tmp_path_factory.mktemp("prometheus")) as prometheus:
        yield prometheus
