"""What `make serve` runs picks up a model added with `ds-triton add-model`, without a restart."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ds_triton.runtime.tritonserver import Ports
from tests.conftest import MODEL_REPOSITORY, ROOT
from tests.repository.live import TEXTS, add_model, embed, state, wait_for

pytestmark = [pytest.mark.server, pytest.mark.slow]


def test_model_added_to_a_running_serve_answers_within_seconds(
    tmp_path: Path, checkpoints: dict[str, Path]
) -> None:
    repo = tmp_path / "model_repository"
    shutil.copytree(MODEL_REPOSITORY / "text_embedding", repo / "text_embedding",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shipped_config = (repo / "text_embedding" / "config.pbtxt").read_text()
    ports = Ports.free()
    command = [
        sys.executable, "-m", "ds_triton.cli", "serve", "--model-repository", str(repo),
        "--http-port", str(ports.http), "--grpc-port", str(ports.grpc),
        "--metrics-port", str(ports.metrics), "--run-dir", str(tmp_path / "run"),
    ]  # fmt: skip
    log = tmp_path / "serve.log"
    url = f"127.0.0.1:{ports.http}"
    with log.open("wb") as out:
        serve = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        try:
            deadline = time.monotonic() + 240
            while "Ctrl-C stops the server" not in log.read_text(errors="replace"):
                assert serve.poll() is None, log.read_text(errors="replace")[-3000:]
                assert time.monotonic() < deadline, "serve never printed its banner"
                time.sleep(0.5)
            assert "model control: poll" in log.read_text(errors="replace")
            # No GPU here: serve's GPU resolution must leave the repository untouched.
            if not Path("/dev/nvidia0").exists():
                assert (repo / "text_embedding" / "config.pbtxt").read_text() == shipped_config

            add_model(repo, "distil", "--task", "embedding", "--checkpoint", str(checkpoints["distilbert"]))
            took = wait_for("distil READY", lambda: state(url, "distil") == "READY", url,
                            lambda: serve.poll() is None)
            print(f"\nmodel added to a running `ds-triton serve` READY after {took:.1f}s")
            assert embed(url, "distil", TEXTS).shape == (2, 48)
            assert np.isfinite(embed(url, "text_embedding", TEXTS)).all()
            serve.send_signal(signal.SIGINT)
            assert serve.wait(timeout=60) == 0
        finally:
            if serve.poll() is None:
                serve.kill()
