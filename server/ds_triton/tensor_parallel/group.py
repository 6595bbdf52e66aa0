"""The leader's handle on its worker processes: start, command, watch, stop.

Each worker is a child of the leader with two pipes: commands in (its stdin,
whose write end only the leader holds, so the worker sees end-of-file the
moment the leader dies, however it dies) and status out (its stdout). Its log
goes to the leader's stderr, i.e. tritonserver's log.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ds_triton.errors import CapacityError, ModelLoadError
from ds_triton.tensor_parallel import channel
from ds_triton.tensor_parallel.messages import Stop, WorkerStatus

LOG = logging.getLogger(__name__)

STOP_GRACE_S = 10.0
# How long a failed forward on rank 0 waits for a worker to report the failure behind it.
CAUSE_WAIT_S = 2.0


class TensorParallelError(CapacityError):
    """The tensor-parallel group lost a rank; the instance cannot serve until it is loaded again.

    UNAVAILABLE: the request may succeed on another instance or after the reload.
    """


@dataclass
class _Worker:
    rank: int
    process: subprocess.Popen[bytes]
    statuses: list[WorkerStatus] = field(default_factory=list)
    ended: threading.Event = field(default_factory=threading.Event)

    @property
    def last_error(self) -> str:
        errors = [s.detail for s in self.statuses if s.phase == "failed"]
        return errors[-1] if errors else ""


def python_executable() -> str:
    """The interpreter of this environment (inside a Triton stub ``sys.executable`` is the stub)."""
    for candidate in (Path(sys.prefix) / "bin" / "python3", Path(sys.executable)):
        if candidate.is_file() and os.access(candidate, os.X_OK) and "python" in candidate.name:
            return str(candidate)
    return "python3"


class WorkerGroup:
    """Ranks ``1..size-1`` of one instance, seen from rank 0."""

    def __init__(self, workers: list[_Worker], name: str) -> None:
        self._workers = workers
        self._name = name
        self._lock = threading.Lock()
        self._broken: str | None = None
        self._closing = False
        self._changed = threading.Condition(self._lock)
        self.on_broken: list[Any] = []  # callables run once, with the reason, when the group breaks
        self._watchers = [
            threading.Thread(target=self._watch, args=(w,), name=f"tp-rank{w.rank}-status", daemon=True)
            for w in workers
        ]
        for thread in self._watchers:
            thread.start()

    @classmethod
    def spawn(
        cls, name: str, version_dir: Path, size: int, devices: list[str], threads: int, store_port: int
    ) -> WorkerGroup:
        """Start ranks ``1..size-1``; they join the group at ``store_port`` and load their shard."""
        workers = []
        for rank in range(1, size):
            command = [
                python_executable(), "-m", "ds_triton.tensor_parallel.worker",
                "--version-dir", str(version_dir), "--rank", str(rank), "--world-size", str(size),
                "--device", devices[rank], "--threads", str(threads), "--store-port", str(store_port),
            ]
            process = subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True,
            )
            workers.append(_Worker(rank, process))
            LOG.info(
                "%s: started tensor-parallel rank %d (pid %d) on %s", name, rank, process.pid, devices[rank]
            )
        return cls(workers, name)

    @property
    def pids(self) -> list[int]:
        return [w.process.pid for w in self._workers]

    # -- startup ---------------------------------------------------------------

    def wait_for(self, phase: str, timeout: float) -> None:
        """Wait until every worker reported ``phase``; ``ModelLoadError`` if one fails or ends."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                pending = [w for w in self._workers if not any(s.phase == phase for s in w.statuses)]
                if not pending:
                    return
                for worker in self._workers:
                    if worker.last_error or worker.ended.is_set():
                        raise ModelLoadError(
                            f"{self._name}: tensor-parallel rank {worker.rank} failed while starting: "
                            f"{self._describe_end(worker)}"
                        )
                left = deadline - time.monotonic()
                if left <= 0:
                    ranks = ", ".join(str(w.rank) for w in pending)
                    raise ModelLoadError(
                        f"{self._name}: tensor-parallel rank(s) {ranks} did not report '{phase}' "
                        f"within {timeout:.0f} s"
                    )
                self._changed.wait(min(left, 1.0))

    # -- serving ---------------------------------------------------------------

    def send_all(self, message: Any) -> None:
        """Send ``message`` to every worker (blocking; pipes are drained by the workers)."""
        for worker in self._workers:
            if worker.process.stdin is None:  # pragma: no cover - always a pipe
                raise RuntimeError("worker has no command pipe")
            channel.send(worker.process.stdin.fileno(), message)

    def raise_if_broken(self) -> None:
        with self._lock:
            reason = self._broken
        if reason is not None:
            raise TensorParallelError(reason)

    def break_with(self, reason: str) -> TensorParallelError:
        """Mark the group broken (first reason wins), stop every worker, return the error to raise."""
        first = False
        with self._changed:
            if self._broken is None and not self._closing:
                self._broken = (
                    f"{self._name}: tensor-parallel group stopped: {reason}; the model must be loaded again"
                )
                first = True
            message = self._broken or reason
            self._changed.notify_all()
        if first:
            LOG.error("%s", message)
            self._kill_all()  # a rank may be blocked in a collective that will never complete
            for callback in self.on_broken:
                try:
                    callback(message)
                except Exception:
                    LOG.exception("tensor-parallel on_broken callback failed")
        return TensorParallelError(message)

    def cause_of_failure(self, own: str, wait: float = CAUSE_WAIT_S) -> str:
        """Why a mirrored forward failed: a worker's failure or death if one is reported within ``wait``."""
        deadline = time.monotonic() + wait
        with self._changed:
            while True:
                if self._broken is not None:
                    return self._broken
                for worker in self._workers:
                    if worker.last_error or worker.ended.is_set():
                        return f"rank {worker.rank} {self._describe_end(worker)}"
                left = deadline - time.monotonic()
                if left <= 0:
                    return own
                self._changed.wait(left)

    @property
    def broken(self) -> str | None:
        with self._lock:
            return self._broken

    # -- shutdown --------------------------------------------------------------

    def close(self, grace: float = STOP_GRACE_S) -> None:
        """Stop every worker: a stop message, ``grace`` seconds, then SIGKILL. Never raises."""
        with self._lock:
            self._closing = True
        for worker in self._workers:
            stdin = worker.process.stdin
            try:
                if stdin is not None and worker.process.poll() is None:
                    channel.send(stdin.fileno(), Stop())
            except Exception:
                pass
            finally:
                _close_quietly(stdin)  # end-of-file is a stop too
        deadline = time.monotonic() + grace
        for worker in self._workers:
            try:
                worker.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                LOG.warning("%s: tensor-parallel rank %d did not stop; killing it", self._name, worker.rank)
        self._kill_all()
        for thread in self._watchers:
            thread.join(timeout=5)

    def _kill_all(self) -> None:
        for worker in self._workers:
            if worker.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.process.pid, signal.SIGKILL)
            try:
                worker.process.wait(timeout=10)
            except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL cannot be ignored
                LOG.error("%s: rank %d survived SIGKILL", self._name, worker.rank)
            _close_quietly(worker.process.stdin)

    # -- status pipes ------------------------------------------------------------

    def _watch(self, worker: _Worker) -> None:
        stdout = worker.process.stdout
        assert stdout is not None
        try:
            while True:
                status = channel.receive(stdout.fileno())
                with self._changed:
                    worker.statuses.append(status)
                    self._changed.notify_all()
                if status.phase == "failed":
                    LOG.error(
                        "%s: tensor-parallel rank %d failed: %s", self._name, worker.rank, status.detail
                    )
        except (channel.ChannelClosed, OSError, ValueError):
            pass
        except Exception:
            LOG.exception("%s: unreadable status from rank %d", self._name, worker.rank)
        worker.process.wait()
        worker.ended.set()
        _close_quietly(stdout)
        with self._changed:
            self._changed.notify_all()
            closing = self._closing
            started = any(s.phase == "ready" for s in worker.statuses)
        if not closing and started:
            self.break_with(f"rank {worker.rank} {self._describe_end(worker)}")

    def _describe_end(self, worker: _Worker) -> str:
        code = worker.process.poll()
        if code is None:
            ended = "is still running"
        elif code < 0:
            ended = f"was killed by signal {signal.Signals(-code).name}"
        else:
            ended = f"exited with status {code}"
        error = worker.last_error
        return f"{ended}: {error}" if error else ended


def _close_quietly(stream: Any) -> None:
    try:
        if stream is not None:
            stream.close()
    except OSError:
        pass
