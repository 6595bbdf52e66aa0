"""The systems a bench compares, each reachable through an :class:`Endpoint`.

``triton`` is this project's server (already running); ``pytriton`` and
``rest`` are started here as child processes over the same model folder and
stopped when their block ends.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ds_triton.server_process.tritonserver import Ports
from ds_triton_perf.peers.processes import peer_process
from ds_triton_perf.peers.pytriton_server import MODEL_NAME as PYTRITON_MODEL
from ds_triton_perf.targets import Endpoint

SYSTEMS = ("triton", "pytriton", "rest")


@dataclass(frozen=True)
class ServerUrls:
    """A running Triton server: ``host:port`` for HTTP and gRPC, full URL for metrics."""

    http: str
    grpc: str
    metrics: str | None = None


@contextlib.contextmanager
def open_system(system: str, model: str, model_dir: Path, server: ServerUrls, protocol: str,
                log_dir: Path) -> Iterator[tuple[Endpoint, ServerUrls | None]]:
    """The endpoint of ``system`` serving ``model``, and its Triton URLs when it has them."""
    if system == "triton":
        url = server.grpc if protocol == "grpc" else server.http
        yield Endpoint("triton", "triton", url, model, protocol), server  # type: ignore[arg-type]
    elif system == "pytriton":
        ports = Ports.free()
        args = ["--http-port", str(ports.http), "--grpc-port", str(ports.grpc),
                "--metrics-port", str(ports.metrics), "--model-dir", str(model_dir)]
        ready = f"http://127.0.0.1:{ports.http}/v2/models/{PYTRITON_MODEL}/ready"
        with peer_process("ds_triton_perf.peers.pytriton_server", args, ready, log_dir / "pytriton.log"):
            urls = ServerUrls(f"127.0.0.1:{ports.http}", f"127.0.0.1:{ports.grpc}",
                              f"http://127.0.0.1:{ports.metrics}/metrics")
            url = urls.grpc if protocol == "grpc" else urls.http
            yield Endpoint("pytriton", "triton", url, PYTRITON_MODEL, protocol), urls  # type: ignore[arg-type]
    elif system == "rest":
        port = Ports.free().http
        args = ["--port", str(port), "--model-dir", str(model_dir)]
        with peer_process("ds_triton_perf.peers.rest_server", args, f"http://127.0.0.1:{port}/health",
                          log_dir / "rest.log"):
            yield Endpoint("rest", "rest", f"127.0.0.1:{port}"), None
    else:
        raise ValueError(f"unknown system {system!r}; expected one of {SYSTEMS}")
