"""The OpenAI-compatible gateway as a child of ``ds-triton serve`` (``--gateway-port``).

``make serve`` passes a port, so one command serves Triton and the OpenAI API.
The gateway stays its own process (``python -m ds_triton_gateway``, what the
``ds-triton-gateway`` command runs), reaching this server over gRPC like any
other client, so deployments can run it apart and scale it on its own. It runs
in its own session: Ctrl-C reaches serve only, which stops the gateway first
(it stops taking requests and lets its streams finish) while the models drain.
Settings beyond the port (API keys, limits, TLS files) come from its
``DS_TRITON_GATEWAY_*`` variables, which it inherits.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ADMIN_KEY_ENV = "DS_TRITON_ADMIN_KEY"


@dataclass(frozen=True)
class GatewayLaunch:
    """Where the gateway listens and which server it fronts.

    Attributes:
        host: Address it listens on (serve's ``--host``).
        port: Its port.
        grpc_url: This server's gRPC endpoint (``grpc://`` or ``grpcs://``).
        model_repository: The repository this server serves.
        admin_key: This server's admin key, handed over in the environment (never on a
            command line) so the gateway can read model configs.
        drain_timeout_s: How long it lets requests in flight finish when stopped.
        extra_args: More ``ds-triton-gateway`` flags (limits, for a benchmark).
    """

    host: str
    port: int
    grpc_url: str
    model_repository: Path
    admin_key: str | None = None
    drain_timeout_s: float = 30.0
    extra_args: tuple[str, ...] = ()

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "ds_triton_gateway", "--url", self.grpc_url, "--host", self.host,
            "--port", str(self.port), "--model-repository", str(Path(self.model_repository).resolve()),
            "--drain-timeout", str(int(self.drain_timeout_s)), *self.extra_args,
        ]  # fmt: skip

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.admin_key:
            env[ADMIN_KEY_ENV] = self.admin_key
        return env


class GatewayProcess:
    """One gateway child: started, stopped gracefully, or killed with the server."""

    def __init__(self, launch: GatewayLaunch) -> None:
        self.launch = launch
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self, log: Path | None = None) -> GatewayProcess:
        """Start it; its output goes to ``log`` when given (else to this process's)."""
        with open(log, "ab") if log else contextlib.nullcontext() as out:
            self._process = subprocess.Popen(
                self.launch.command(), env=self.launch.env(), start_new_session=True,
                stdout=out, stderr=subprocess.STDOUT if out else None,
            )  # fmt: skip
        return self

    def poll(self) -> int | None:
        return self._process.poll() if self._process else None

    def terminate(self) -> None:
        """Ask it to stop: no new connections; requests in flight finish (returns at once)."""
        if self._process is not None and self._process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self._process.send_signal(signal.SIGTERM)

    def wait(self, timeout: float) -> int | None:
        """Wait up to ``timeout`` for it to exit, then kill it; its exit code."""
        if self._process is None:
            return None
        try:
            return self._process.wait(timeout=max(timeout, 0.0))
        except subprocess.TimeoutExpired:
            self.kill()
            return self._process.wait()

    def kill(self) -> None:
        if self._process is not None and self._process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()
