"""The server image's entry point and readiness check, run here as the image runs them.

No Docker engine: ``docker/entrypoint.sh`` runs on this machine with the image's
environment pointed at a temporary repository and free ports, and execs the real
``ds-triton serve``. One spec in the repository is broken.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ds_triton.server_process.tritonserver import free_ports
from tests.deploy.conftest import ProcessGroup, tritonserver_child
from tests.deploy.stack import DOCKER, ROOT, stop_process

pytestmark = [pytest.mark.slow, pytest.mark.server]

GOOD, BROKEN = "text_generation", "broken_spec"


@dataclass
class Container:
    process: subprocess.Popen[bytes]
    env: dict[str, str]
    run_dir: Path
    log: Path
    http_port: int

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def ready(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["sh", str(DOCKER / "ready.sh")], env=self.env, capture_output=True, text=True)

    def get(self, path: str) -> int:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=5) as response:
                return int(response.status)
        except urllib.error.HTTPError as error:
            return int(error.code)


def make_repository(path: Path) -> Path:
    """The shipped generation model (tiny checkpoint), and a copy whose spec names an unknown task."""
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(ROOT / "model_repository" / GOOD, path / GOOD, ignore=ignore)
    shutil.copytree(path / GOOD, path / BROKEN)
    spec_path = path / BROKEN / "1" / "model.json"
    spec = json.loads(spec_path.read_text())
    spec.update(name=BROKEN, task="summarisation")
    spec_path.write_text(json.dumps(spec))
    return path


@pytest.fixture(scope="module")
def container(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Container]:
    work = tmp_path_factory.mktemp("container")
    repository = make_repository(work / "models")
    http, grpc, metrics, supervisor = free_ports(4)
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "MODEL_REPOSITORY": str(repository),
        "DS_TRITON_RUN_DIR": str(work / "run"),
        "HOST": "127.0.0.1",  # the image says 0.0.0.0; a test keeps to this machine
        "HTTP_PORT": str(http), "GRPC_PORT": str(grpc), "METRICS_PORT": str(metrics),
        "SUPERVISOR_METRICS_PORT": str(supervisor),
    }  # fmt: skip
    log = work / "container.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            ["bash", str(DOCKER / "entrypoint.sh")], env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True, cwd=work,
        )  # fmt: skip
    box = Container(process, env, work / "run", log, http)
    groups: list[ProcessGroup] = []
    try:
        deadline = time.monotonic() + 240
        while box.ready().returncode != 0:
            assert process.poll() is None, f"the entry point exited:\n{box.output[-3000:]}"
            assert time.monotonic() < deadline, f"never ready:\n{box.output[-3000:]}"
            time.sleep(1)
        # serve (the entry point exec'd into it) and tritonserver's own group with
        # its stubs: recorded so that cleanup finds them whatever happens.
        groups = [ProcessGroup(process.pid), ProcessGroup(tritonserver_child(process.pid))]
        for group in groups:
            group.record()
        yield box
    finally:
        stop_process(process)
        for group in groups:
            group.reap()


def test_a_failing_spec_is_logged_and_skipped(container: Container) -> None:
    assert f"skipping {BROKEN}: its spec does not render" in container.output
    assert "summarisation" in container.output  # the spec's own error is shown
    assert (container.run_dir / "models").read_text().split() == [GOOD]
    assert sorted(p.name for p in (container.run_dir / "repository").iterdir()) == [GOOD]


def test_the_served_models_and_the_server_are_ready(container: Container) -> None:
    assert container.ready().returncode == 0
    assert container.get(f"/v2/models/{GOOD}/ready") == 200
    assert container.get(f"/v2/models/{BROKEN}/ready") != 200  # never handed to Triton
    assert container.get("/v2/health/ready") == 200  # strict readiness: every loaded model is ready


def test_readiness_fails_for_a_model_in_use_that_is_not_served(container: Container) -> None:
    missing = container.run_dir / "models"
    saved = missing.read_text()
    try:
        missing.write_text(f"{GOOD}\n{BROKEN}\n")
        result = container.ready()
        assert result.returncode == 1 and f"model {BROKEN} is not ready" in result.stderr
    finally:
        missing.write_text(saved)


def test_sigterm_to_the_entry_point_drains_and_exits(container: Container) -> None:
    started = time.monotonic()
    container.process.send_signal(signal.SIGTERM)
    code = container.process.wait(timeout=60)
    assert code == 0, container.output[-3000:]
    assert time.monotonic() - started < 35  # the default drain (30 s) + 5 s, idle here
