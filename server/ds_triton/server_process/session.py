"""What ``ds-triton serve`` runs: tritonserver, the model supervisor, and a clean drain.

Stopping (SIGTERM, Ctrl-C) is done here rather than left to tritonserver's own
SIGTERM handling, which in Triton 2.51 (``src/main.cc``, ``HTTPServer::Stop``)
first waits up to ``--exit-timeout-secs`` for every open HTTP connection to
close while still serving requests on them (idle keep-alive connections of a
client pool or a balancer hold it for the whole timeout), then drops the
connections that remain, SSE streams included, and only then stops the models.
Instead:

1. every model is unloaded through the repository API: models stop being ready
   at once and new requests are refused, while requests already queued or
   running finish (a decoupled model's ``finalize`` finishes its streams);
2. once every model is unloaded, or ``drain_timeout_s`` has passed,
   tritonserver alone gets SIGTERM; with no model left and a short exit timeout
   it exits within seconds, and its stubs have already ended;
3. anything left of its process group is killed and its ``/dev/shm`` regions removed.

If tritonserver dies on its own (crash, SIGKILL, OOM), its stubs are killed at
once, their regions removed, and serve exits non-zero.

With a gateway (``--gateway-port``), the OpenAI-compatible gateway runs as a
child: it gets SIGTERM when the drain starts (it takes no new requests, and the
streams it carries finish while the models drain) and is waited for before
tritonserver stops; it is killed at once when tritonserver dies.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ds_triton.server_process.gateway import GatewayLaunch, GatewayProcess
from ds_triton.server_process.repository_watch import RepositoryWatcher
from ds_triton.server_process.shm import TRITON_REGION_PREFIX, remove_unused_regions
from ds_triton.server_process.supervisor import ModelSupervisor, RestartPolicy
from ds_triton.server_process.supervisor_metrics import MetricsServer
from ds_triton.server_process.triton_api import TritonApi, TritonApiError
from ds_triton.server_process.tritonserver import ADMIN_HEADER, ServerOptions, TritonServer

STALE_REGION_AGE_S = 10.0  # a region this young may be one another server is creating


def _print_report(message: str) -> None:
    print(f"ds-triton: {message}", file=sys.stderr, flush=True)


@dataclass
class ServeConfig:
    """Everything ``ds-triton serve`` decides beyond tritonserver's own options."""

    options: ServerOptions
    watch_repository: bool = True
    drain_timeout_s: float = 30.0
    restart_policy: RestartPolicy = field(default_factory=RestartPolicy)
    metrics_port: int | None = None  # the supervisor's Prometheus endpoint; None: off
    gateway: GatewayLaunch | None = None  # the OpenAI-compatible gateway; None: off


class ServeSession:
    """One tritonserver under supervision, from start to a clean (or forced) stop."""

    def __init__(self, config: ServeConfig, report: Callable[[str], None] = _print_report) -> None:
        self.config = config
        self.report = report
        options = config.options
        headers = ((ADMIN_HEADER, options.admin_key),) if options.admin_key else ()
        self.api = TritonApi(f"{options.connect_host}:{options.ports.http}", headers)
        self.server = TritonServer(options)
        self.supervisor: ModelSupervisor | None = None
        self.metrics: MetricsServer | None = None
        self.gateway: GatewayProcess | None = None
        self._gateway_reported = False
        self._stop_requested = threading.Event()
        self._forced = False

    # -- start -------------------------------------------------------------------------

    def start(self) -> ServeSession:
        removed = remove_unused_regions(prefix=TRITON_REGION_PREFIX, min_age_s=STALE_REGION_AGE_S)
        if removed:
            self.report(f"removed {len(removed)} /dev/shm region(s) that earlier crashed runs left behind")
        watcher = None
        if self.config.watch_repository:
            watcher = RepositoryWatcher(self.config.options.model_repository)
            watcher.baseline()  # what tritonserver loads at start
        self.server.start()
        assert self.server.pid is not None
        self.supervisor = ModelSupervisor(
            self.api,
            self.server.pid,
            policy=self.config.restart_policy,
            watcher=watcher,
            poll_seconds=self.config.options.poll_seconds,
            report=self.report,
            # The healthy stubs of a crashed version get as long as a drain to finish their work.
            retire_after_s=self.config.drain_timeout_s,
        ).start()
        if self.config.metrics_port is not None:
            self.metrics = MetricsServer(
                self.config.options.host, self.config.metrics_port, self.supervisor.records
            ).start()
        if self.config.gateway is not None:
            self.gateway = GatewayProcess(self.config.gateway).start()
        return self

    def wait_ready(self, timeout: float) -> bool:
        """Wait for the server to be ready; False if it is stopping, exited or timed out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._stop_requested.is_set() or self.server.poll() is not None:
                return False
            if self.api.ready():
                return True
            self._stop_requested.wait(0.5)
        return False

    # -- run and stop ------------------------------------------------------------------

    @property
    def stopping(self) -> bool:
        return self._stop_requested.is_set()

    def request_stop(self) -> None:
        """First call: drain. Second call: stop now (SIGKILL), as a second Ctrl-C expects."""
        if not self._stop_requested.is_set():
            self._stop_requested.set()
            return
        self._forced = True
        if self.gateway is not None:
            self.gateway.kill()
        if self.server.pid is not None and self.server.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.server.pid, signal.SIGKILL)

    def run(self) -> int:
        """Serve until asked to stop (drain, exit 0) or until tritonserver dies (non-zero)."""
        while True:
            code = self.server.poll()
            if code is not None:
                return self._after_server_death(code)
            if self._stop_requested.is_set():
                return self._drain()
            self._watch_gateway()
            self._stop_requested.wait(0.1)

    def _watch_gateway(self) -> None:
        code = self.gateway.poll() if self.gateway is not None else None
        if code is not None and not self._gateway_reported:
            self._gateway_reported = True
            self.report(f"the OpenAI gateway exited with code {code} (see its output above); "
                        "Triton keeps serving")

    def _after_server_death(self, code: int) -> int:
        self._stop_helpers()
        if self.gateway is not None:
            self.gateway.kill()
            self.gateway.wait(timeout=5)
        if self._forced:
            killed = self.server.end_leftovers(grace=0)
            self.report(f"stopped at once (second signal); killed {len(killed)} leftover process(es)")
            return 130
        how = f"killed by {_signal_name(-code)}" if code < 0 else f"exit code {code}"
        killed = self.server.end_leftovers(grace=0)
        self.report(
            f"tritonserver exited unexpectedly ({how}); killed its {len(killed)} stub process(es) "
            "and removed their /dev/shm regions"
        )
        return 128 - code if code < 0 else (code or 1)  # a shell's convention for signals

    def _drain(self) -> int:
        started = time.monotonic()
        self._stop_helpers()
        if self.gateway is not None:
            self.gateway.terminate()
        timeout = self.config.drain_timeout_s
        self.report(f"stopping: models unload now (new requests are refused); requests and streams "
                    f"already accepted finish (up to {timeout:.0f}s)")
        left = self._unload_all(started + timeout)
        if left:
            self.report(f"drain timeout: still unloading after {timeout:.0f}s: {', '.join(left)}")
        else:
            self.report(f"every model unloaded in {time.monotonic() - started:.1f}s")
        if self.gateway is not None:
            # Its streams ended with the models'; what is left is closing connections.
            self.gateway.wait(timeout=max(started + timeout - time.monotonic(), 2.0))
        exit_wait = self.config.options.exit_timeout_s + 2.0
        self.server.stop(timeout=exit_wait)
        code = self.server.poll()
        if self._forced:
            return 130
        if code == -signal.SIGKILL:
            # Every model is unloaded by now: what holds tritonserver is its gRPC server,
            # which in Triton 2.51 waits without limit for clients that keep a stream open.
            self.report(f"tritonserver was still running {exit_wait:.0f}s after SIGTERM with every model "
                        "unloaded (a gRPC client keeps a stream open); it was killed, nothing was lost")
        elif code not in (0, -signal.SIGTERM):
            # Triton 2.51 never finishes unloading a model version whose stub crashed under
            # load and gives up on it after --exit-timeout-secs.
            self.report(f"tritonserver exited with code {code}")
        self.report(f"stopped in {time.monotonic() - started:.1f}s")
        return 0

    def _unload_all(self, deadline: float) -> list[str]:
        """Unload every model and wait for its stubs to end; the models still busy at ``deadline``."""
        busy: list[str] = []
        while time.monotonic() < deadline and self.server.poll() is None:
            if self.supervisor is not None:
                self.supervisor.end_retired(time.monotonic())
            try:
                index = self.api.index()
            except (TritonApiError, OSError):
                time.sleep(0.2)
                continue
            serving = {name for name, row in index.items() if row.state in ("READY", "LOADING")}
            for name in serving:
                with contextlib.suppress(TritonApiError, OSError):
                    self.api.unload(name)
            # A stub ends once its model is finalized, which for a decoupled model waits for
            # its streams. (A version stuck UNLOADING after a crash has zombies only.)
            busy = sorted(serving | {stub.model for stub in self.server.stubs()})
            if not busy:
                return []
            time.sleep(0.2)
        return busy

    def _stop_helpers(self) -> None:
        if self.supervisor is not None:
            self.supervisor.stop()
        if self.metrics is not None:
            self.metrics.stop()
            self.metrics = None


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
