"""Shared fixtures: a real tritonserver on free ports over the project's model repository.

Server-level tests never mock Triton. One session-scoped server serves every
test that needs the shipped models; tests that change a repository start their
own server on a temporary copy (see ``start_server``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from ds_triton.server_process.tritonserver import (
    ModelControl,
    Ports,
    ServerOptions,
    TritonServer,
    running_server,
)

ROOT = Path(__file__).resolve().parents[1]
MODEL_REPOSITORY = ROOT / "model_repository"


def shipped_models() -> list[str]:
    return sorted(p.name for p in MODEL_REPOSITORY.iterdir() if (p / "config.pbtxt").is_file())


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


StartServer = Callable[..., AbstractContextManager[TritonServer]]


@pytest.fixture(scope="session")
def start_server(tmp_path_factory: pytest.TempPathFactory) -> StartServer:
    """Context-manager factory: ``with start_server(repo, models=[...]) as server: ...``."""

    def start(
        repository: Path = MODEL_REPOSITORY,
        models: Sequence[str] = (),
        model_control: ModelControl = "none",
        poll_seconds: int = 1,
        extra_args: Sequence[str] = (),
    ) -> AbstractContextManager[TritonServer]:
        run_dir = tmp_path_factory.mktemp("triton-run")
        options = ServerOptions(
            model_repository=repository,
            ports=Ports.free(),
            run_dir=run_dir,
            model_control=model_control,
            poll_seconds=poll_seconds,
            extra_args=extra_args,
        )
        return running_server(options, log_path=run_dir / "server.log", models=models)

    return start


@pytest.fixture(scope="session")
def triton_server(start_server: StartServer) -> Iterator[TritonServer]:
    """The shipped model repository, every model READY, for the whole session."""
    with start_server(models=shipped_models()) as server:
        yield server


# scripts/gpu_check.sh sets this: there a missing GPU is a failure, never a skip.
REQUIRE_GPU_ENV = "DS_TRITON_REQUIRE_GPU"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    has_gpu = os.path.exists("/dev/nvidia0")
    # The marker itself, not ``item.keywords``: keywords also hold folder names, and a
    # checkout in a folder called "gpu" would skip every test.
    gpu_items = [item for item in items if item.get_closest_marker("gpu") is not None]
    if has_gpu or not gpu_items:
        return
    if os.environ.get(REQUIRE_GPU_ENV) == "1":
        raise pytest.UsageError(
            f"{len(gpu_items)} gpu-marked test(s) collected, {REQUIRE_GPU_ENV}=1, and this machine "
            "has no /dev/nvidia0: the GPU check must not skip them"
        )
    for item in gpu_items:
        item.add_marker(pytest.mark.skip(reason="needs an NVIDIA GPU"))
