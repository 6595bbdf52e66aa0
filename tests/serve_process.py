"""Run `ds-triton serve` (what `make serve` runs) as a child process, as a person would."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ds_triton.server_process.procfs import children_of, group_members, read_argv
from ds_triton.server_process.shm import remove_unused_regions
from ds_triton.server_process.tritonserver import SHM_PREFIX_FLAG, Ports, free_ports

ROOT = Path(__file__).resolve().parents[1]
BANNER_END = "Ctrl-C stops the server"


@dataclass
class ServeProcess:
    process: subprocess.Popen[bytes]
    ports: Ports
    supervisor_metrics_port: int
    log: Path

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.ports.http}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.ports.grpc}"

    def shm_prefix(self) -> str:
        """The prefix of this server's /dev/shm regions (from its command line)."""
        for arg in read_argv(self.tritonserver_pid()):
            if SHM_PREFIX_FLAG in arg:
                return arg.split(SHM_PREFIX_FLAG, 1)[1]
        raise AssertionError("tritonserver runs without a region prefix")

    def tritonserver_pid(self) -> int:
        """The tritonserver this serve started (its child)."""
        for stat in children_of(self.process.pid):
            argv = read_argv(stat.pid)
            if argv and Path(argv[0]).name == "tritonserver":
                return stat.pid
        raise AssertionError(f"no tritonserver under serve (pid {self.process.pid})")

    def wait_for_output(self, pattern: str, timeout: float = 240, after: int = 0) -> re.Match[str]:
        """Wait until serve's output (from character ``after`` on) matches ``pattern``."""
        deadline = time.monotonic() + timeout
        while True:
            found = re.search(pattern, self.output[after:])
            if found:
                return found
            if self.process.poll() is not None:
                raise AssertionError(f"serve exited while waiting for {pattern!r}:\n{self.output[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {pattern!r} after {timeout:.0f}s:\n{self.output[-3000:]}")
            time.sleep(0.2)


def group_alive(pgid: int) -> list[int]:
    """Live (non-zombie) processes of a process group: a tritonserver's is its own pid."""
    return [stat.pid for stat in group_members(pgid) if not stat.is_zombie]


@contextlib.contextmanager
def serving(
    repository: Path, work_dir: Path, banner_timeout: float = 240, extra_args: Sequence[str] = ()
) -> Iterator[ServeProcess]:
    """Start `ds-triton serve` on free ports, wait for its banner, kill it if the test did not stop it."""
    http, grpc, metrics, supervisor_metrics = free_ports(4)
    ports = Ports(http, grpc, metrics)
    command = [
        sys.executable, "-m", "ds_triton.cli", "serve", "--model-repository", str(repository),
        "--http-port", str(ports.http), "--grpc-port", str(ports.grpc),
        "--metrics-port", str(ports.metrics), "--supervisor-metrics-port", str(supervisor_metrics),
        "--run-dir", str(work_dir / "run"), *extra_args,
    ]  # fmt: skip
    log = work_dir / "serve.log"
    with log.open("wb") as out:
        serve = ServeProcess(
            subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT),
            ports,
            supervisor_metrics,
            log,
        )
        server_pid, prefix = None, None
        try:
            serve.wait_for_output(BANNER_END, banner_timeout)
            server_pid, prefix = serve.tritonserver_pid(), serve.shm_prefix()
            yield serve
        finally:
            if serve.process.poll() is None:
                serve.process.kill()
                serve.process.wait(timeout=30)
            if server_pid is not None and group_alive(server_pid):  # serve was killed: end what it left
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(server_pid, signal.SIGKILL)
                deadline = time.monotonic() + 10
                while group_alive(server_pid) and time.monotonic() < deadline:
                    time.sleep(0.1)
            if prefix is not None:
                remove_unused_regions(prefix=prefix)
