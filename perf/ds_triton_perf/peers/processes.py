"""Start a peer server as a child process, wait until it answers, always stop it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

from ds_triton.server_process.tritonserver import server_env


class PeerStartError(RuntimeError):
    """A peer exited or never became ready; the message holds its log tail."""


@contextlib.contextmanager
def peer_process(module: str, args: Sequence[str], ready_url: str, log_path: Path,
                 timeout_s: float = 240.0) -> Iterator[int]:
    """Run ``python -m module args`` in its own process group until the block ends.

    Yields the child's pid. ``ready_url`` must answer 200 before the block runs.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", module, *args], env=server_env(), stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )
        try:
            _wait_ready(process, ready_url, log_path, timeout_s)
            yield process.pid
        finally:
            _stop(process)


def _wait_ready(process: subprocess.Popen[bytes], url: str, log_path: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise PeerStartError(f"peer exited with code {process.returncode}:\n{_tail(log_path)}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise PeerStartError(f"peer not ready at {url} after {timeout_s:.0f}s:\n{_tail(log_path)}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    # The group holds PyTriton's tritonserver and stubs too.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)


def _tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.is_file() else ""
