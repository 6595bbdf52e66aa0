"""What `make serve` runs picks up a model added with `ds-triton add-model`, without a restart."""

from __future__ import annotations

import shutil
import signal
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import MODEL_REPOSITORY
from tests.repository import tiny_checkpoints
from tests.repository.live import TEXTS, add_model, embed, state, wait_for
from tests.serve_process import serving

pytestmark = [pytest.mark.server, pytest.mark.slow]


@pytest.fixture
def distilbert(tmp_path: Path) -> Path:
    return tiny_checkpoints.make_distilbert(tmp_path / "distilbert")


def test_model_added_to_a_running_serve_answers_within_seconds(tmp_path: Path, distilbert: Path) -> None:
    repo = tmp_path / "model_repository"
    shutil.copytree(
        MODEL_REPOSITORY / "text_embedding",
        repo / "text_embedding",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    shipped_config = (repo / "text_embedding" / "config.pbtxt").read_text()
    with serving(repo, tmp_path) as serve:
        url = f"127.0.0.1:{serve.ports.http}"
        assert "model control: poll" in serve.output
        # No GPU here: serve's GPU resolution must leave the repository untouched.
        if not Path("/dev/nvidia0").exists():
            assert (repo / "text_embedding" / "config.pbtxt").read_text() == shipped_config

        add_model(repo, "distil", "--task", "embedding", "--checkpoint", str(distilbert))
        took = wait_for(
            "distil READY", lambda: state(url, "distil") == "READY", url, lambda: serve.process.poll() is None
        )
        print(f"\nmodel added to a running `ds-triton serve` READY after {took:.1f}s")
        assert embed(url, "distil", TEXTS).shape == (2, 48)
        assert np.isfinite(embed(url, "text_embedding", TEXTS)).all()
        serve.process.send_signal(signal.SIGINT)
        assert serve.process.wait(timeout=60) == 0
