"""Locate and run the ``tritonserver`` binary that ``nvidia-pytriton`` ships.

Used by ``ds-triton serve``, the test fixtures and the benchmarks, so every
one of them runs Triton the same way:

* the Python backend is assembled in a run folder from symlinks, because the
  stub finds its bundled libraries relative to its own real path;
* the venv's ``bin`` goes first on PATH (the stub takes ``sys.prefix`` from the
  ``python3`` it finds there) and the CUDA runtime that perf_analyzer and the
  stub link goes on LD_LIBRARY_PATH;
* the server runs in its own process group, so stopping it never leaves a stub.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal

ModelControl = Literal["none", "poll", "explicit"]


class ServerStartError(RuntimeError):
    """tritonserver exited or never became ready; the message holds its log tail."""


@dataclass(frozen=True)
class Ports:
    http: int = 8000
    grpc: int = 8001
    metrics: int = 8002

    @classmethod
    def free(cls) -> Ports:
        """Three currently free loopback ports (for tests and benchmarks)."""
        return cls(*free_ports(3))


def free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def pytriton_home() -> Path:
    """``site-packages/pytriton/tritonserver`` of the running interpreter."""
    import importlib.util

    found = importlib.util.find_spec("pytriton")
    if found is None or not found.submodule_search_locations:
        raise ServerStartError("nvidia-pytriton is not installed: run `make setup`")
    return Path(next(iter(found.submodule_search_locations))) / "tritonserver"


# Set in the container image to its own server (NGC: /opt/tritonserver/bin/tritonserver),
# which replaces the tritonserver 2.51 that nvidia-pytriton ships.
INSTALLED_SERVER_ENV = "DS_TRITON_TRITONSERVER"


def installed_tritonserver() -> Path | None:
    """The tritonserver named by ``$DS_TRITON_TRITONSERVER``, if set."""
    value = os.environ.get(INSTALLED_SERVER_ENV, "")
    if not value:
        return None
    binary = Path(value)
    if not binary.is_file():
        raise ServerStartError(f"{INSTALLED_SERVER_ENV}={value}: no such file")
    return binary


def tritonserver_binary() -> Path:
    return installed_tritonserver() or pytriton_home() / "bin" / "tritonserver"


def prepare_backend_dir(run_dir: Path) -> Path:
    """A backend folder whose ``python/`` links the backend and this Python's stub.

    An installed server (``$DS_TRITON_TRITONSERVER``) brings its own: ``<home>/backends``.
    """
    installed = installed_tritonserver()
    if installed is not None:
        return installed.parent.parent / "backends"
    home = pytriton_home()
    python_dir = run_dir / "backends" / "python"
    python_dir.mkdir(parents=True, exist_ok=True)
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    links = {
        "libtriton_python.so": home / "backends" / "python" / "libtriton_python.so",
        "triton_python_backend_utils.py": home / "backends" / "python" / "triton_python_backend_utils.py",
        "triton_python_backend_stub": home / "python_backend_stubs" / version / "triton_python_backend_stub",
    }
    for name, target in links.items():
        if not target.exists():
            raise ServerStartError(f"missing {target}: reinstall nvidia-pytriton (`make setup`)")
        link = python_dir / name
        if link.is_symlink() or link.exists():
            if link.resolve() == target.resolve():
                continue
            link.unlink()
        link.symlink_to(target)
    return run_dir / "backends"


def cuda_runtime_lib_dir() -> Path | None:
    """Folder of ``libcudart.so.12`` from ``nvidia-cuda-runtime-cu12`` (perf_analyzer needs it)."""
    import importlib.util

    found = importlib.util.find_spec("nvidia")
    for base in (found.submodule_search_locations or []) if found else []:
        candidate = Path(base) / "cuda_runtime" / "lib"
        if candidate.is_dir():
            return candidate
    return None


def server_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for tritonserver and perf_analyzer: venv first on PATH, CUDA runtime found."""
    env = dict(os.environ if base is None else base)
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join(
        [venv_bin, *[p for p in env.get("PATH", "").split(os.pathsep) if p and p != venv_bin]]
    )
    lib = cuda_runtime_lib_dir()
    if lib is not None:
        env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(lib), env.get("LD_LIBRARY_PATH", "")]))
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    # Bytecode caches written into a model folder would look like a change to
    # Triton's repository poller and trigger a needless reload.
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


@dataclass
class ServerOptions:
    """How to run tritonserver over a model repository."""

    model_repository: Path
    ports: Ports = field(default_factory=Ports)
    run_dir: Path = field(default_factory=lambda: Path(".run"))
    model_control: ModelControl = "poll"
    poll_seconds: int = 2
    models: Sequence[str] = ()
    log_verbose: int = 0
    extra_args: Sequence[str] = ()

    def command(self, backend_dir: Path) -> list[str]:
        args = [
            str(tritonserver_binary()),
            f"--model-repository={Path(self.model_repository).resolve()}",
            f"--backend-directory={backend_dir.resolve()}",
            f"--http-port={self.ports.http}",
            f"--grpc-port={self.ports.grpc}",
            f"--metrics-port={self.ports.metrics}",
            f"--model-control-mode={self.model_control}",
            # A model that fails to load is reported UNAVAILABLE; the others keep serving.
            "--exit-on-error=false",
            "--strict-readiness=false",
            f"--log-verbose={self.log_verbose}",
            # Request and queue-time quantiles on /metrics (Triton 2.51 has no
            # latency histograms); the Grafana dashboard and alert rules use them.
            "--metrics-config=summary_latencies=true",
        ]
        if self.model_control == "poll":
            args.append(f"--repository-poll-secs={self.poll_seconds}")
        if self.model_control == "explicit":
            args += [f"--load-model={name}" for name in self.models] or ["--load-model=*"]
        return [*args, *self.extra_args]


class TritonServer:
    """A running tritonserver process; use as a context manager or call ``stop``."""

    def __init__(self, options: ServerOptions, log: IO[bytes] | int | None = None) -> None:
        self.options = options
        self._log = log
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.options.ports.http}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.options.ports.grpc}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.options.ports.metrics}/metrics"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self) -> TritonServer:
        backend_dir = prepare_backend_dir(Path(self.options.run_dir))
        self._process = subprocess.Popen(
            self.options.command(backend_dir),
            env=server_env(),
            stdout=self._log,
            stderr=subprocess.STDOUT if self._log is not None else None,
            start_new_session=True,
        )
        return self

    def poll(self) -> int | None:
        return self._process.poll() if self._process else None

    def wait_ready(self, timeout: float = 180.0, models: Sequence[str] = ()) -> None:
        """Block until the server is ready and every named model is READY."""
        deadline = time.monotonic() + timeout
        paths = ["/v2/health/ready", *[f"/v2/models/{m}/ready" for m in models]]
        while time.monotonic() < deadline:
            if self.poll() is not None:
                raise ServerStartError(f"tritonserver exited with code {self.poll()}")
            if all(self._ok(path) for path in paths):
                return
            time.sleep(0.5)
        raise ServerStartError(f"tritonserver not ready after {timeout:.0f}s (waited for {paths})")

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM the process group, then SIGKILL whatever outlives ``timeout``."""
        process = self._process
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=timeout)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)

    def wait(self) -> int:
        if self._process is None:
            raise RuntimeError("TritonServer.wait() called before start()")
        return self._process.wait()

    def _ok(self, path: str) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.http_url}{path}", timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def running_server(
    options: ServerOptions,
    log_path: Path | None = None,
    ready_timeout: float = 240.0,
    models: Sequence[str] = (),
) -> Iterator[TritonServer]:
    """Start a server, wait for it and the named models, and always stop it."""
    log = open(log_path, "wb") if log_path else None  # noqa: SIM115 - closed below
    server = TritonServer(options, log=log)
    try:
        server.start()
        try:
            server.wait_ready(ready_timeout, models)
        except ServerStartError as exc:
            tail = log_path.read_text(errors="replace")[-4000:] if log_path else ""
            raise ServerStartError(f"{exc}\n--- server log tail ---\n{tail}") from None
        yield server
    finally:
        server.stop()
        if log:
            log.close()
