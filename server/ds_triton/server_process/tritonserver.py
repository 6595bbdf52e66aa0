"""Locate and run the ``tritonserver`` binary that ``nvidia-pytriton`` ships.

Used by ``ds-triton serve``, the test fixtures and the benchmarks, so every
one of them runs Triton the same way:

* the Python backend is assembled in a run folder from symlinks, because the
  stub finds its bundled libraries relative to its own real path;
* the venv's ``bin`` goes first on PATH (the stub takes ``sys.prefix`` from the
  ``python3`` it finds there) and the CUDA runtime that perf_analyzer and the
  stub link goes on LD_LIBRARY_PATH;
* the server runs in its own process group and gives its stubs' ``/dev/shm``
  regions a prefix of its own, so stopping it (or cleaning up after it died)
  finds every stub and region it left and nothing of other servers.
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
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal

from ds_triton.server_process.procfs import group_members
from ds_triton.server_process.shm import TRITON_REGION_PREFIX, remove_unused_regions
from ds_triton.server_process.stubs import Stub, find_stubs

ModelControl = Literal["none", "poll", "explicit"]
SHM_PREFIX_FLAG = "shm-region-prefix-name="
# APIs an admin key guards; inference, health, metadata and statistics stay open.
RESTRICTED_APIS = ("shared-memory", "model-repository", "model-config", "logging", "trace")
ADMIN_HEADER = "admin-key"  # HTTP header; gRPC metadata is "triton-grpc-protocol-admin-key"
GRPC_ADMIN_HEADER = f"triton-grpc-protocol-{ADMIN_HEADER}"


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
    # Bytecode caches written into a model folder would look like a change to Triton's
    # repository poller and trigger a needless reload. This keeps the Python processes
    # started with this environment from writing them; the backend stub's embedded
    # interpreter still writes model.py's (measured with Triton 2.51), so poll mode reloads
    # each Python model once after its first load: ``ds-triton serve`` watches the
    # repository itself (skipping ``__pycache__``), and tests use "none" or "explicit".
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


@dataclass(frozen=True)
class GrpcTls:
    """gRPC TLS: the server's certificate and key; a client CA turns on mutual TLS."""

    cert: Path
    key: Path
    client_ca: Path | None = None

    def args(self) -> list[str]:
        args = [
            f"--grpc-server-cert={Path(self.cert).resolve()}",
            f"--grpc-server-key={Path(self.key).resolve()}",
        ]
        if self.client_ca is None:
            return ["--grpc-use-ssl=true", *args]
        return ["--grpc-use-ssl-mutual=true", *args, f"--grpc-root-cert={Path(self.client_ca).resolve()}"]


@dataclass
class ServerOptions:
    """How to run tritonserver over a model repository.

    ``host`` is the address HTTP, gRPC and metrics listen on (loopback unless told
    otherwise). ``admin_key`` restricts ``RESTRICTED_APIS`` to requests carrying it
    (HTTP header ``admin-key``, gRPC metadata ``triton-grpc-protocol-admin-key``).
    ``exit_timeout_s`` bounds tritonserver's own shutdown after SIGTERM.
    """

    model_repository: Path
    ports: Ports = field(default_factory=Ports)
    run_dir: Path = field(default_factory=lambda: Path(".run"))
    model_control: ModelControl = "poll"
    poll_seconds: int = 2
    models: Sequence[str] = ()
    log_verbose: int = 0
    extra_args: Sequence[str] = ()
    host: str = "127.0.0.1"
    admin_key: str | None = None
    grpc_tls: GrpcTls | None = None
    strict_readiness: bool = False
    exit_timeout_s: int = 30
    shm_prefix: str = field(default_factory=lambda: f"{TRITON_REGION_PREFIX}{uuid.uuid4().hex[:8]}_")

    def __post_init__(self) -> None:
        # A prefix passed by hand in extra_args wins; stop() cleans up after that one.
        for arg in self.extra_args:
            if arg.startswith("--backend-config=python,") and SHM_PREFIX_FLAG in arg:
                self.shm_prefix = arg.split(SHM_PREFIX_FLAG, 1)[1]

    @property
    def connect_host(self) -> str:
        """Where local clients (readiness checks, the supervisor) reach the server."""
        return "127.0.0.1" if self.host in ("0.0.0.0", "", "::") else self.host

    def command(self, backend_dir: Path) -> list[str]:
        args = [
            str(tritonserver_binary()),
            f"--model-repository={Path(self.model_repository).resolve()}",
            f"--backend-directory={backend_dir.resolve()}",
            f"--http-address={self.host}",
            f"--grpc-address={self.host}",
            f"--metrics-address={self.host}",
            f"--http-port={self.ports.http}",
            f"--grpc-port={self.ports.grpc}",
            f"--metrics-port={self.ports.metrics}",
            f"--model-control-mode={self.model_control}",
            # A model that fails to load is reported UNAVAILABLE; the others keep serving.
            "--exit-on-error=false",
            f"--strict-readiness={str(self.strict_readiness).lower()}",
            f"--exit-timeout-secs={self.exit_timeout_s}",
            f"--log-verbose={self.log_verbose}",
            # Request and queue-time quantiles on /metrics (Triton 2.51 has no
            # latency histograms); the Grafana dashboard and alert rules use them.
            "--metrics-config=summary_latencies=true",
        ]
        if not any(SHM_PREFIX_FLAG in arg for arg in self.extra_args):
            args.append(f"--backend-config=python,{SHM_PREFIX_FLAG}{self.shm_prefix}")
        if self.model_control == "poll":
            args.append(f"--repository-poll-secs={self.poll_seconds}")
        if self.model_control == "explicit":
            args += [f"--load-model={name}" for name in self.models] or ["--load-model=*"]
        if self.admin_key:
            apis = ",".join(RESTRICTED_APIS)
            args += [
                f"--http-restricted-api={apis}:{ADMIN_HEADER}={self.admin_key}",
                f"--grpc-restricted-protocol={apis}:{ADMIN_HEADER}={self.admin_key}",
            ]
        if self.grpc_tls is not None:
            args += self.grpc_tls.args()
        return [*args, *self.extra_args]


class TritonServer:
    """A running tritonserver process; use as a context manager or call ``stop``."""

    def __init__(self, options: ServerOptions, log: IO[bytes] | int | None = None) -> None:
        self.options = options
        self._log = log
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def http_url(self) -> str:
        return f"{self.options.connect_host}:{self.options.ports.http}"

    @property
    def grpc_url(self) -> str:
        return f"{self.options.connect_host}:{self.options.ports.grpc}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.options.connect_host}:{self.options.ports.metrics}/metrics"

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
        """Stop tritonserver; no stub process and no ``/dev/shm`` region of it outlives this.

        SIGTERM goes to tritonserver alone: it unloads every model, which finalizes
        and ends each stub (stubs ignore SIGTERM themselves). What outlives
        ``timeout`` is SIGKILLed. Runs the clean-up also when the server had already
        exited (crashed or killed): its stubs would otherwise run on as orphans.
        """
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=5)
        self.end_leftovers()

    def end_leftovers(self, grace: float = 1.0) -> list[int]:
        """Kill what is left of this server's process group and remove its shm regions.

        A stub notices its parent is gone within 0.3 s and exits by itself; one still
        there after ``grace`` is SIGKILLed. Returns the pids that had to be killed.
        """
        process = self._process
        if process is None or process.poll() is None:
            raise RuntimeError("end_leftovers() is for a tritonserver that has exited")
        deadline = time.monotonic() + grace
        while self._group_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        killed = [stat.pid for stat in group_members(process.pid) if not stat.is_zombie]
        if killed:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            deadline = time.monotonic() + 5
            while self._group_alive() and time.monotonic() < deadline:
                time.sleep(0.05)
        _reap_adopted(killed)
        remove_unused_regions(prefix=self.options.shm_prefix)
        return killed

    def stubs(self) -> list[Stub]:
        """This server's live instance stubs."""
        return find_stubs(self.pid) if self.pid is not None and self.poll() is None else []

    def _group_alive(self) -> bool:
        assert self._process is not None
        return any(not stat.is_zombie for stat in group_members(self._process.pid))

    def wait(self) -> int:
        if self._process is None:
            raise RuntimeError("TritonServer.wait() called before start()")
        return self._process.wait()

    def _ok(self, path: str) -> bool:
        # A fresh connection per check: tritonserver waits for open HTTP connections at exit.
        try:
            with urllib.request.urlopen(f"http://{self.http_url}{path}", timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _reap_adopted(pids: Sequence[int]) -> None:
    """Reap killed stubs that were handed to this process (it is PID 1 in a container)."""
    for pid in pids:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)


@contextlib.contextmanager
def running_server(
    options: ServerOptions,
    log_path: Path | None = None,
    ready_timeout: float = 480.0,
    models: Sequence[str] = (),
) -> Iterator[TritonServer]:
    """Start a server, wait for it and the named models, and always stop it.

    The generous wait is for shared machines: a repository of several models took
    226-340 s to load at a load average of 30 on 2 cores (about a minute when quiet).
    """
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
