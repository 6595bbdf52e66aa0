"""The container runs its image's own tritonserver through ``$DS_TRITON_TRITONSERVER``."""

from __future__ import annotations

from pathlib import Path

import pytest

from ds_triton.server_process.tritonserver import (
    INSTALLED_SERVER_ENV,
    ServerOptions,
    ServerStartError,
    prepare_backend_dir,
    tritonserver_binary,
)


@pytest.fixture
def ngc_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``/opt/tritonserver`` as the NGC image lays it out: bin/tritonserver and backends/."""
    home = tmp_path / "opt" / "tritonserver"
    (home / "bin").mkdir(parents=True)
    (home / "backends" / "python").mkdir(parents=True)
    (home / "bin" / "tritonserver").write_text("")
    monkeypatch.setenv(INSTALLED_SERVER_ENV, str(home / "bin" / "tritonserver"))
    return home


def test_an_installed_server_and_its_own_backends_are_used(ngc_layout: Path, tmp_path: Path) -> None:
    backends = prepare_backend_dir(tmp_path / "run")
    assert backends == ngc_layout / "backends"
    assert not (tmp_path / "run").exists()  # no symlinked stub folder for an installed server
    command = ServerOptions(model_repository=tmp_path).command(backends)
    assert command[0] == str(ngc_layout / "bin" / "tritonserver")
    assert f"--backend-directory={ngc_layout / 'backends'}" in command


def test_a_missing_installed_server_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(INSTALLED_SERVER_ENV, str(tmp_path / "nowhere" / "tritonserver"))
    with pytest.raises(ServerStartError, match=r"DS_TRITON_TRITONSERVER=.*nowhere.*no such file"):
        tritonserver_binary()


def test_latency_summaries_are_on_for_the_dashboard(tmp_path: Path) -> None:
    command = ServerOptions(model_repository=tmp_path).command(tmp_path)
    assert "--metrics-config=summary_latencies=true" in command
