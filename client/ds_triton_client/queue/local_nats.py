"""A local ``nats-server`` with JetStream on file storage: for tests, benchmarks and trying the queue.

Production runs its own NATS servers (see the README); this starts one on a
free loopback port with its store in a given folder, and can kill and start it
again on the same port and store (what the restart tests do).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


class LocalNatsServer:
    """One ``nats-server -js`` process.

    Args:
        store_dir: JetStream file storage (kept across ``kill``/``start``).
        port: Client port (default: a free one, kept across restarts).
        host: Listen address.
        binary: The ``nats-server`` executable.
    """

    def __init__(self, store_dir: Path, port: int | None = None, host: str = "127.0.0.1",
                 binary: str = "nats-server") -> None:  # fmt: skip
        found = shutil.which(binary)
        if found is None:
            raise FileNotFoundError(f"{binary} not found: install it (Debian: apt-get install nats-server)")
        self.binary = found
        self.store_dir = store_dir
        self.host = host
        self.port = port or free_port(host)
        self.log_path = store_dir / "nats-server.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def start(self, timeout_s: float = 30.0) -> LocalNatsServer:
        """Start (again) and wait until it accepts connections."""
        self.store_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [self.binary, "--jetstream", "--store_dir", str(self.store_dir), "--addr", self.host,
                 "--port", str(self.port)],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"nats-server exited ({self.process.returncode}):\n{self._log_tail()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return self
            except OSError:
                if time.monotonic() > deadline:
                    self.kill()
                    raise TimeoutError(
                        f"nats-server not listening after {timeout_s:g}s:\n{self._log_tail()}"
                    ) from None
                time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: no shutdown at all (JetStream recovers its files on the next start)."""
        self._signal(signal.SIGKILL)

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM, then SIGKILL if it has not exited in time."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()

    def _signal(self, signum: int) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signum)
            self.process.wait()

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def __enter__(self) -> LocalNatsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
