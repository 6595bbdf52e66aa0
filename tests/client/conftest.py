"""Real tritonserver replicas for client tests: an embedding-only repository on free ports.

To spare the shared CPUs the replicas serve only ``text_embedding`` (a copy of the
shipped folder). ``Replica`` can be killed with SIGKILL and started again on the
same ports, which is what the failover tests need; it gives its Python-backend
shared-memory regions a private prefix so a killed replica's regions can be removed.
"""

from __future__ import annotations

import os
import shutil
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ds_triton.server_process.tritonserver import Ports, ServerOptions, TritonServer

ROOT = Path(__file__).resolve().parents[2]
EMBED_MODEL = "text_embedding"
GENERATE_MODEL = "text_generation"


@pytest.fixture(scope="session")
def embedding_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repository = tmp_path_factory.mktemp("embedding-repo")
    shutil.copytree(
        ROOT / "model_repository" / EMBED_MODEL,
        repository / EMBED_MODEL,
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    return repository


class Replica:
    """One tritonserver on fixed free ports that a test may kill and start again."""

    def __init__(
        self,
        repository: Path,
        run_dir: Path,
        models: tuple[str, ...] = (EMBED_MODEL,),
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.ports = Ports.free()
        self.repository = repository
        self.run_dir = run_dir
        self.models = models
        self.extra_args = extra_args
        self.shm_prefix = f"dstc_{uuid.uuid4().hex[:10]}_"
        self.server: TritonServer | None = None
        self._log: object = None

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.http}"

    @property
    def grpc_url(self) -> str:
        return f"grpc://127.0.0.1:{self.ports.grpc}"

    def start(self) -> Replica:
        options = ServerOptions(
            model_repository=self.repository,
            ports=self.ports,
            run_dir=self.run_dir,
            model_control="none",
            extra_args=(
                f"--backend-config=python,shm-region-prefix-name={self.shm_prefix}",
                *self.extra_args,
            ),
        )
        log = open(self.run_dir / "server.log", "ab")  # noqa: SIM115 - closed in stop/kill
        self._log = log
        self.server = TritonServer(options, log=log).start()
        try:
            self.server.wait_ready(240, self.models)
        except Exception:
            self.stop()
            raise
        return self

    def kill(self) -> None:
        """SIGKILL the server and its stubs at once: no graceful drain, like a crash."""
        if self.server is not None and self.server.pid is not None and self.server.poll() is None:
            os.killpg(self.server.pid, signal.SIGKILL)
            self.server.wait()
        self._cleanup()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
        self._cleanup()

    def _cleanup(self) -> None:
        for region in Path("/dev/shm").glob(f"{self.shm_prefix}*"):
            region.unlink(missing_ok=True)
        if self._log is not None:
            self._log.close()  # type: ignore[attr-defined]
            self._log = None


@pytest.fixture(scope="session")
def replica_a(embedding_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replica]:
    """A long-lived embedding replica shared by the client's server tests."""
    replica = Replica(embedding_repository, tmp_path_factory.mktemp("replica-a")).start()
    try:
        yield replica
    finally:
        replica.stop()


@pytest.fixture
def replica_b(embedding_repository: Path, tmp_path: Path) -> Iterator[Replica]:
    """A second replica owned by one test (which may kill and restart it)."""
    replica = Replica(embedding_repository, tmp_path).start()
    try:
        yield replica
    finally:
        replica.stop()


def dead_url(scheme: str = "http") -> str:
    """A loopback address where nothing listens (connection refused)."""
    port = Ports.free().http
    return f"{scheme}://127.0.0.1:{port}"


@pytest.fixture(scope="session")
def generation_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replica]:
    """The shipped ``text_generation`` model alone, when the repository has it."""
    source = ROOT / "model_repository" / GENERATE_MODEL
    if not (source / "config.pbtxt").is_file():
        pytest.skip("model_repository/text_generation is not there yet")
    repository = tmp_path_factory.mktemp("generation-repo")
    shutil.copytree(source, repository / GENERATE_MODEL, ignore=shutil.ignore_patterns("__pycache__"))
    replica = Replica(repository, tmp_path_factory.mktemp("generation-run"), (GENERATE_MODEL,)).start()
    try:
        yield replica
    finally:
        replica.stop()
