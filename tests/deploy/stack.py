"""The project's balancer and monitoring configs, run for real on free ports.

nginx and Prometheus run from ``docker/`` exactly as the images run them, with
only what a test machine must change: the replicas' addresses and ports, the
listen ports and certificate paths (nginx's template variables), and for
Prometheus a 1 s scrape and rule interval so that a test sees data in seconds.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ds_triton.server_process.tritonserver import free_ports

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
# The address every replica shares on the compose network (docker/compose.yaml).
REPLICA_ALIAS = "triton"
# Container ports of a replica, by role: what the configs name, what a test maps.
CONTAINER_PORTS = {"http": 8000, "grpc": 8001, "metrics": 8002, "supervisor": 8003}


@dataclass(frozen=True)
class ReplicaPorts:
    http: int
    grpc: int
    metrics: int
    supervisor: int

    def by_container_port(self, port: int) -> int:
        role = {v: k for k, v in CONTAINER_PORTS.items()}[port]
        return int(getattr(self, role))


@dataclass(frozen=True)
class Tls:
    ca: Path
    cert: Path
    key: Path


def make_tls(directory: Path) -> Tls:
    """A CA and a localhost certificate, made by the project's docker/make-tls.sh."""
    subprocess.run(["sh", str(DOCKER / "make-tls.sh"), str(directory)], check=True, capture_output=True)
    return Tls(directory / "ca.crt", directory / "tls.crt", directory / "tls.key")


def wait_for_port(port: int, timeout: float, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"{process.args!r} exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.2)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f}s")


def stop_process(process: subprocess.Popen[bytes], first: int = signal.SIGTERM, timeout: float = 15) -> None:
    """Signal the process group; SIGKILL it if its leader outlives ``timeout``.

    nginx's master leaves only after its workers, so a leader that exited leaves
    no group behind (and its id is not signalled again once it may be reused).
    """
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, first)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)


# -- nginx -----------------------------------------------------------------------


@dataclass(frozen=True)
class NginxPorts:
    https: int
    grpcs: int


def render_nginx_config(
    environment: Mapping[str, str], replicas: Sequence[ReplicaPorts], host: str = "127.0.0.1"
) -> str:
    """docker/nginx/render.sh's output, with each ``server triton:PORT ...;`` line
    turned into one line per replica (same parameters), as nginx does when the
    alias resolves to every replica's address."""
    rendered = subprocess.run(
        ["sh", str(DOCKER / "nginx" / "render.sh")],
        env={**os.environ, **environment}, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    pattern = re.compile(rf"^(\s*)server {REPLICA_ALIAS}:(\d+)(\s[^;]*)?;$", re.MULTILINE)

    def expand(match: re.Match[str]) -> str:
        indent, port, params = match.group(1), int(match.group(2)), match.group(3) or ""
        return "\n".join(f"{indent}server {host}:{r.by_container_port(port)}{params};" for r in replicas)

    config, count = pattern.subn(expand, rendered)
    if count != 2:  # the HTTP and the gRPC upstream
        raise AssertionError(f"expected 2 upstream server lines for {REPLICA_ALIAS!r}, found {count}")
    return config


@dataclass
class Nginx:
    prefix: Path
    ports: NginxPorts
    process: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> str:
        return (self.prefix / "nginx.log").read_text(errors="replace")


def nginx_environment(prefix: Path, ports: NginxPorts, tls: Tls) -> dict[str, str]:
    return {
        "NGINX_HTTPS_PORT": str(ports.https),
        "NGINX_GRPCS_PORT": str(ports.grpcs),
        "NGINX_TLS_CERT": str(tls.cert),
        "NGINX_TLS_KEY": str(tls.key),
        "NGINX_ACCESS_LOG": str(prefix / "access.log"),
    }


def nginx_test(config: str) -> subprocess.CompletedProcess[str]:
    """``nginx -t`` on a config text, in a throwaway prefix."""
    with tempfile.TemporaryDirectory(prefix="ds-triton-nginx-t-") as prefix:
        Path(prefix, "tmp").mkdir()
        Path(prefix, "nginx.conf").write_text(config)
        return subprocess.run(
            ["nginx", "-e", "stderr", "-p", prefix, "-c", f"{prefix}/nginx.conf", "-t"],
            capture_output=True, text=True,
        )  # fmt: skip


@contextlib.contextmanager
def running_nginx(replicas: Sequence[ReplicaPorts], tls: Tls) -> Iterator[Nginx]:
    """The project's nginx config in front of ``replicas``, in the foreground, always stopped."""
    # As root, nginx's workers run as nobody: their prefix must be reachable by
    # them (pytest's tmp_path sits under a 0700 folder).
    prefix = Path(tempfile.mkdtemp(prefix="ds-triton-nginx-"))
    prefix.chmod(0o755)
    (prefix / "tmp").mkdir()
    ports = NginxPorts(*free_ports(2))
    nginx = Nginx(prefix, ports)
    try:
        config = render_nginx_config(nginx_environment(prefix, ports, tls), replicas)
        (prefix / "nginx.conf").write_text(config)
        with (prefix / "nginx.log").open("wb") as log:
            nginx.process = subprocess.Popen(
                ["nginx", "-e", "stderr", "-p", str(prefix), "-c", str(prefix / "nginx.conf"),
                 "-g", "daemon off;"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        wait_for_port(ports.https, 20, nginx.process)
        wait_for_port(ports.grpcs, 20, nginx.process)
        yield nginx
    finally:
        if nginx.process is not None:
            stop_process(nginx.process, signal.SIGQUIT)  # graceful: finish what is in flight
        shutil.rmtree(prefix, ignore_errors=True)


def https_context(tls: Tls) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(tls.ca))


# -- Prometheus --------------------------------------------------------------------


def prometheus_config(replicas: Sequence[ReplicaPorts], interval: str = "1s") -> dict[str, Any]:
    """docker/prometheus/prometheus.yml with the replicas as static targets.

    Each job's DNS discovery of the replica alias becomes the replicas'
    addresses for the same container port; everything else is kept.
    """
    config: dict[str, Any] = yaml.safe_load((DOCKER / "prometheus" / "prometheus.yml").read_text())
    config["global"].update(scrape_interval=interval, evaluation_interval=interval)
    config["rule_files"] = [str(DOCKER / "prometheus" / name) for name in config["rule_files"]]
    for job in config["scrape_configs"]:
        discovery = job.pop("dns_sd_configs")
        targets = [
            f"127.0.0.1:{replica.by_container_port(block['port'])}"
            for block in discovery
            if block["names"] == [REPLICA_ALIAS]
            for replica in replicas
        ]
        job["static_configs"] = [{"targets": targets}]
    return config


@dataclass
class Prometheus:
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}{path}?{query}", timeout=30) as response:
            body = json.load(response)
        if body.get("status") != "success":
            raise AssertionError(f"{path} {params}: {body}")
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """An instant query's result vector (``at``: unix time, default now)."""
        params = {"query": expr} if at is None else {"query": expr, "time": f"{at:.3f}"}
        data = self.get("/api/v1/query", **params)
        result = data["result"]
        return list(result) if data["resultType"] == "vector" else [{"metric": {}, "value": result}]


@contextlib.contextmanager
def running_prometheus(replicas: Sequence[ReplicaPorts], work_dir: Path) -> Iterator[Prometheus]:
    """Prometheus with the project's config and rules, scraping ``replicas``; always stopped."""
    config_path = work_dir / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(prometheus_config(replicas)))
    check = subprocess.run(["promtool", "check", "config", str(config_path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    (port,) = free_ports(1)
    log_path = work_dir / "prometheus.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            ["prometheus", f"--config.file={config_path}", f"--storage.tsdb.path={work_dir / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    prometheus = Prometheus(port, process, log_path)
    try:
        wait_for_port(port, 30, process)
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), urllib.request.urlopen(f"{prometheus.url}/-/ready", timeout=2):
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"Prometheus not ready:\n{log_path.read_text()[-2000:]}")
            time.sleep(0.3)
        yield prometheus
    finally:
        stop_process(process)
