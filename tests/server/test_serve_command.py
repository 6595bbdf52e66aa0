"""`ds-triton serve` (what `make serve` runs): banner, live server, clean Ctrl-C, no strays."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.serve_process import serving

pytestmark = pytest.mark.server

ROOT = Path(__file__).resolve().parents[2]


def processes_mentioning(text: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in cmdline:
                found.append(f"{entry.name}: {cmdline}")
    return found


def test_serve_prints_endpoints_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    repository = tmp_path / "repo"
    shutil.copytree(ROOT / "model_repository" / "text_embedding", repository / "text_embedding")
    with serving(repository, tmp_path) as serve:
        ports, text = serve.ports, serve.output
        assert f"http://localhost:{ports.http}" in text
        assert f"localhost:{ports.grpc}" in text
        assert f"curl -s localhost:{ports.http}/v2/models/text_embedding/infer" in text
        with urllib.request.urlopen(f"http://127.0.0.1:{ports.http}/v2/models/text_embedding/ready") as r:
            assert r.status == 200
        assert processes_mentioning(str(repository))  # the server and its stub are up
        serve.process.send_signal(signal.SIGINT)
        assert serve.process.wait(timeout=60) == 0
    deadline = time.monotonic() + 15
    while processes_mentioning(str(repository)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert processes_mentioning(str(repository)) == []


def test_second_setup_is_quick_and_changes_nothing() -> None:
    venv = ROOT / ".venv"
    before = {p: p.stat().st_mtime_ns for p in (venv / "bin").iterdir()}
    started = time.monotonic()
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "setup.sh")],
        capture_output=True, text=True, timeout=120, check=False, env={**os.environ, "VENV": str(venv)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "up to date" in result.stdout
    assert time.monotonic() - started < 30
    assert {p: p.stat().st_mtime_ns for p in (venv / "bin").iterdir()} == before
