"""Live loading on a running server (poll mode): drop in, change, remove; broken models isolated.

One server polls a temporary copy of the shipped repository. Models of
architectures the shipped ones do not use (DistilBERT, OPT) are added with the
real ``ds-triton add-model`` command and must answer as Hugging Face computes
them in this process; broken models must be UNAVAILABLE with their error while
``text_embedding`` keeps serving.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from tritonclient.utils import InferenceServerException

from ds_triton.spec import ModelSpec
from tests.conftest import MODEL_REPOSITORY, StartServer
from tests.repository.conftest import MINILM
from tests.repository.live import (
    CLI,
    TEXTS,
    add_model,
    drop_in_by_hand,
    embed,
    generate,
    hf_embeddings,
    hf_greedy,
    index,
    model_config,
    state,
    wait_for,
)

pytestmark = [pytest.mark.server, pytest.mark.slow]

Live = tuple[str, Callable[[], bool], Path]  # HTTP address, "is it still running", repository


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, start_server: StartServer) -> Iterator[Live]:
    """A poll-mode server over a copy of the repository holding text_embedding only."""
    repo = tmp_path_factory.mktemp("live") / "model_repository"
    shutil.copytree(MODEL_REPOSITORY / "text_embedding", repo / "text_embedding",
                    ignore=shutil.ignore_patterns("__pycache__"))
    with start_server(repository=repo, models=["text_embedding"], model_control="poll") as server:
        yield server.http_url, lambda: server.poll() is None, repo


def test_second_encoder_architecture_dropped_in_changed_and_removed(
    live: Live, checkpoints: dict[str, Path]
) -> None:
    url, alive, repo = live
    checkpoint = checkpoints["distilbert"]
    add_model(repo, "distil", "--task", "embedding", "--checkpoint", str(checkpoint), "--cpu")
    took = wait_for("distil READY", lambda: state(url, "distil") == "READY", url, alive)
    print(f"\ndistil (DistilBERT) READY {took:.1f}s after add-model")
    got = embed(url, "distil", TEXTS)
    assert got.shape == (2, 48)
    np.testing.assert_allclose(got, hf_embeddings(checkpoint, TEXTS, "mean"), atol=1e-5)

    # Change it: new pooling and batch size; Triton reloads it in place.
    add_model(repo, "distil", "--task", "embedding", "--checkpoint", str(checkpoint), "--cpu", "--force",
              "--pooling", "cls", "--max-batch-size", "8", "--preferred-batch-sizes", "4,8")

    def reloaded() -> bool:
        return state(url, "distil") == "READY" and model_config(url, "distil")["max_batch_size"] == 8

    wait_for("distil reloaded with max_batch_size 8", reloaded, url, alive)
    np.testing.assert_allclose(embed(url, "distil", TEXTS), hf_embeddings(checkpoint, TEXTS, "cls"),
                               atol=1e-5)

    # A change to model.json alone (config.pbtxt identical) is picked up too.
    config_before = (repo / "distil" / "config.pbtxt").read_bytes()
    add_model(repo, "distil", "--task", "embedding", "--checkpoint", str(checkpoint), "--cpu", "--force",
              "--pooling", "mean", "--max-batch-size", "8", "--preferred-batch-sizes", "4,8")
    assert (repo / "distil" / "config.pbtxt").read_bytes() == config_before
    mean = hf_embeddings(checkpoint, TEXTS, "mean")

    def pools_by_mean() -> bool:
        try:
            return bool(np.allclose(embed(url, "distil", TEXTS), mean, atol=1e-5))
        except InferenceServerException:  # between versions during the swap
            return False

    wait_for("distil reloaded with mean pooling", pools_by_mean, url, alive)

    # Remove it: unloaded; the shipped model never stopped serving.
    shutil.rmtree(repo / "distil")
    wait_for("distil unloaded", lambda: state(url, "distil") in ("ABSENT", "UNAVAILABLE"), url, alive)
    assert state(url, "text_embedding") == "READY"
    assert embed(url, "text_embedding", TEXTS).shape == (2, 384)


def test_second_causal_lm_architecture_generates(live: Live, checkpoints: dict[str, Path]) -> None:
    url, alive, repo = live
    checkpoint = checkpoints["opt"]
    add_model(repo, "opt", "--task", "generation", "--checkpoint", str(checkpoint), "--cpu",
              "--max-concurrent-sequences", "4")
    took = wait_for("opt READY", lambda: state(url, "opt") == "READY", url, alive)
    print(f"\nopt (OPT) READY {took:.1f}s after add-model")
    answer = generate(url, "opt", "hello world", 8)
    assert answer["text_output"] == hf_greedy(checkpoint, "hello world", 8)
    assert answer["text_output"].strip()


def test_broken_models_are_unavailable_with_their_error_while_others_serve(
    live: Live, checkpoints: dict[str, Path]
) -> None:
    url, alive, repo = live
    drop_in_by_hand(repo, ModelSpec.from_dict(
        {"name": "t5_gen", "task": "generation", "checkpoint": "checkpoint"}), checkpoint=checkpoints["t5"])
    drop_in_by_hand(repo, ModelSpec.from_dict(
        {"name": "no_weights", "task": "generation", "checkpoint": str(repo.parent / "missing")}))
    # A typo in model.json: one line naming the key and its type, not a traceback.
    typo = {"name": "typo", "task": "embedding", "checkpoint": MINILM}
    drop_in_by_hand(repo, ModelSpec.from_dict(typo),
                    model_json=json.dumps({**typo, "batching": {"max_batch_size": "64"}}))
    # A checkpoint outside the repository is never read.
    outside = shutil.copytree(checkpoints["distilbert"], repo.parent / "outside")
    escape = os.path.relpath(outside, repo / "escapes" / "1")
    drop_in_by_hand(repo, ModelSpec.from_dict({"name": "escapes", "task": "embedding", "checkpoint": escape}))
    broken = ("t5_gen", "no_weights", "typo", "escapes")
    wait_for("the broken models UNAVAILABLE",
             lambda: all(state(url, name) == "UNAVAILABLE" for name in broken), url, alive)
    reasons = {name: index(url)[name].get("reason", "") for name in broken}
    assert "architecture 't5'" in reasons["t5_gen"] and "not a causal language model" in reasons["t5_gen"]
    assert "has no config.json" in reasons["no_weights"]
    assert 'batching.max_batch_size must be an integer, got "64" (a string)' in reasons["typo"]
    assert "Traceback" not in reasons["typo"]
    assert "outside the model repository" in reasons["escapes"]
    assert state(url, "text_embedding") == "READY"
    assert embed(url, "text_embedding", TEXTS).shape == (2, 384)
    # The checker names the same problems before any server would see them.
    check = subprocess.run([str(CLI), "check", str(repo)], capture_output=True, text=True, timeout=120)
    assert check.returncode == 1
    assert "t5_gen/1/model.json: [checkpoint]" in check.stdout
    assert "no_weights/1/model.json: [checkpoint]" in check.stdout
    assert 'typo/1/model.json: [spec] batching.max_batch_size must be an integer, got "64"' in check.stdout
    assert "escapes/1/model.json: [checkpoint]" in check.stdout
    for name in broken:
        shutil.rmtree(repo / name)
