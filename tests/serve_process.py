"""Run `ds-triton serve` (what `make serve` runs) as a child process, as a person would."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ds_triton.server_process.tritonserver import Ports

ROOT = Path(__file__).resolve().parents[1]
BANNER_END = "Ctrl-C stops the server"


@dataclass
class ServeProcess:
    process: subprocess.Popen[bytes]
    ports: Ports
    log: Path

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def serving(repository: Path, work_dir: Path, banner_timeout: float = 240) -> Iterator[ServeProcess]:
    """Start `ds-triton serve` on free ports, wait for its banner, kill it if the test did not stop it."""
    ports = Ports.free()
    command = [
        sys.executable, "-m", "ds_triton.cli", "serve", "--model-repository", str(repository),
        "--http-port", str(ports.http), "--grpc-port", str(ports.grpc),
        "--metrics-port", str(ports.metrics), "--run-dir", str(work_dir / "run"),
    ]  # fmt: skip
    log = work_dir / "serve.log"
    with log.open("wb") as out:
        serve = ServeProcess(
            subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT), ports, log
        )
        try:
            deadline = time.monotonic() + banner_timeout
            while BANNER_END not in serve.output:
                if serve.process.poll() is not None:
                    raise AssertionError(f"serve exited early:\n{serve.output[-3000:]}")
                if time.monotonic() > deadline:
                    raise AssertionError(f"serve never printed its banner:\n{serve.output[-3000:]}")
                time.sleep(0.5)
            yield serve
        finally:
            if serve.process.poll() is None:
                serve.process.kill()
                serve.process.wait(timeout=30)
