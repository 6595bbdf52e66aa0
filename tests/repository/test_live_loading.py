"""Live loading on a running server (poll mode): drop in, change, remove; broken models isolated.

One server polls a temporary copy of the shipped repository. Models of
architectures the shipped ones do not use (DistilBERT, OPT) are added with the
real ``ds-triton add-model`` command and must answer like Hugging Face computes
them in this process; broken models must be UNAVAILABLE with their error while
``text_embedding`` keeps serving.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http as httpclient

from ds_triton.repository.layout import SHIM_SOURCE
from ds_triton.repository.render import config_text, render_config
from ds_triton.runtime.tritonserver import TritonServer
from ds_triton.spec import ModelSpec
from tests.conftest import MODEL_REPOSITORY, StartServer

pytestmark = [pytest.mark.server, pytest.mark.slow]

CLI = Path(sys.executable).parent / "ds-triton"
LOAD_TIMEOUT_S = 240.0  # a Python-backend load imports torch and DeepSpeed in a fresh stub
TEXTS = ["a dropped-in model answers", "without a restart"]


@pytest.fixture(scope="module")
def live(
    tmp_path_factory: pytest.TempPathFactory, start_server: StartServer
) -> Iterator[tuple[TritonServer, Path]]:
    """A poll-mode server over a copy of the repository holding text_embedding only."""
    repo = tmp_path_factory.mktemp("live") / "model_repository"
    shutil.copytree(MODEL_REPOSITORY / "text_embedding", repo / "text_embedding",
                    ignore=shutil.ignore_patterns("__pycache__"))
    with start_server(repository=repo, models=["text_embedding"], model_control="poll") as server:
        yield server, repo


# -- helpers -------------------------------------------------------------------


def add_model(repo: Path, name: str, *args: str) -> None:
    result = subprocess.run(
        [str(CLI), "add-model", name, "--repository", str(repo), *args],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def index(server: TritonServer) -> dict[str, dict[str, Any]]:
    url = f"http://{server.http_url}/v2/repository/index"
    request = urllib.request.Request(url, data=b"{}", method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        return {entry["name"]: entry for entry in json.loads(response.read())}


def wait_for(what: str, condition: Callable[[], bool], server: TritonServer,
             timeout: float = LOAD_TIMEOUT_S) -> float:
    """Poll ``condition`` until true; return the seconds it took (bounded by ``timeout``)."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if condition():
            return time.monotonic() - start
        assert server.poll() is None, "tritonserver exited"
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; index: {index(server)}")


def state(server: TritonServer, name: str) -> str:
    return str(index(server).get(name, {}).get("state", "ABSENT"))


def model_config(server: TritonServer, name: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://{server.http_url}/v2/models/{name}/config", timeout=10) as response:
        return dict(json.loads(response.read()))


def embed(server: TritonServer, model: str, texts: Sequence[str]) -> np.ndarray:
    client = httpclient.InferenceServerClient(server.http_url)
    try:
        tensor = httpclient.InferInput("text", [len(texts), 1], "BYTES")
        tensor.set_data_from_numpy(np.array([[t.encode()] for t in texts], dtype=np.object_))
        result = client.infer(model, [tensor])
        return np.asarray(result.as_numpy("embedding"))
    finally:
        client.close()


def generate(server: TritonServer, model: str, prompt: str, max_tokens: int) -> dict[str, Any]:
    body = json.dumps({
        "text_input": prompt, "exclude_input_in_output": True,
        "parameters": {"temperature": 0, "max_tokens": max_tokens},
    }).encode()
    request = urllib.request.Request(f"http://{server.http_url}/v2/models/{model}/generate", data=body,
                                     method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return dict(json.loads(response.read()))
    except urllib.error.HTTPError as exc:
        raise AssertionError(f"generate failed: {exc.code} {exc.read()!r}") from None


def hf_embeddings(checkpoint: Path, texts: Sequence[str], pooling: str) -> np.ndarray:
    """What the shared encoder must compute, straight from transformers."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    model = AutoModel.from_pretrained(checkpoint).eval()
    batch = tokenizer(list(texts), padding=True, return_tensors="pt")
    with torch.inference_mode():
        hidden = model(**batch).last_hidden_state
    if pooling == "cls":
        pooled = hidden[:, 0]
    else:
        mask = batch["attention_mask"].unsqueeze(-1).float()
        pooled = (hidden * mask).sum(1) / mask.sum(1)
    return torch.nn.functional.normalize(pooled, dim=1).numpy()


def hf_greedy(checkpoint: Path, prompt: str, max_tokens: int) -> str:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32).eval()
    inputs = tokenizer(prompt, return_tensors="pt")
    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=max_tokens, do_sample=False)
    full = str(tokenizer.decode(out[0].tolist(), skip_special_tokens=True))
    prompt_text = str(tokenizer.decode(inputs["input_ids"][0].tolist(), skip_special_tokens=True))
    return full[len(prompt_text):]


def drop_in_by_hand(repo: Path, spec: ModelSpec) -> None:
    """Copy a model folder in the way a user would, without add-model's checks."""
    staging = repo.parent / f"staging-{spec.name}"
    (staging / "1").mkdir(parents=True)
    (staging / "1" / "model.json").write_text(spec.dumps())
    (staging / "1" / "model.py").write_text(SHIM_SOURCE)
    (staging / "config.pbtxt").write_text(config_text(render_config(spec)))
    staging.rename(repo / spec.name)


# -- tests ---------------------------------------------------------------------


def test_second_encoder_architecture_dropped_in_changed_and_removed(
    live: tuple[TritonServer, Path], checkpoints: dict[str, Path]
) -> None:
    server, repo = live
    checkpoint = checkpoints["distilbert"]
    add_model(repo, "distil", "--task", "embedding", "--checkpoint", str(checkpoint), "--cpu")
    took = wait_for("distil READY", lambda: state(server, "distil") == "READY", server)
    print(f"\ndistil (DistilBERT) READY {took:.1f}s after add-model")
    got = embed(server, "distil", TEXTS)
    assert got.shape == (2, 48)
    np.testing.assert_allclose(got, hf_embeddings(checkpoint, TEXTS, "mean"), atol=1e-5)

    # Change it: new pooling and batch size; Triton reloads it in place.
    add_model(repo, "distil", "--task", "embedding", "--checkpoint", str(checkpoint), "--cpu", "--force",
              "--pooling", "cls", "--max-batch-size", "8", "--preferred-batch-sizes", "4,8")

    def reloaded() -> bool:
        return state(server, "distil") == "READY" and model_config(server, "distil")["max_batch_size"] == 8

    wait_for("distil reloaded with max_batch_size 8", reloaded, server)
    np.testing.assert_allclose(embed(server, "distil", TEXTS), hf_embeddings(checkpoint, TEXTS, "cls"),
                               atol=1e-5)

    # Remove it: unloaded; the shipped model never stopped serving.
    shutil.rmtree(repo / "distil")
    wait_for("distil unloaded", lambda: state(server, "distil") in ("ABSENT", "UNAVAILABLE"), server)
    assert state(server, "text_embedding") == "READY"
    assert embed(server, "text_embedding", TEXTS).shape == (2, 384)


def test_second_causal_lm_architecture_generates(
    live: tuple[TritonServer, Path], checkpoints: dict[str, Path]
) -> None:
    server, repo = live
    checkpoint = checkpoints["opt"]
    add_model(repo, "opt", "--task", "generation", "--checkpoint", str(checkpoint), "--cpu",
              "--max-concurrent-sequences", "4")
    took = wait_for("opt READY", lambda: state(server, "opt") == "READY", server)
    print(f"\nopt (OPT) READY {took:.1f}s after add-model")
    answer = generate(server, "opt", "hello world", 8)
    assert answer["text_output"] == hf_greedy(checkpoint, "hello world", 8)
    assert answer["text_output"].strip()


def test_broken_models_are_unavailable_with_their_error_while_others_serve(
    live: tuple[TritonServer, Path], checkpoints: dict[str, Path]
) -> None:
    server, repo = live
    drop_in_by_hand(repo, ModelSpec.from_dict(
        {"name": "t5_gen", "task": "generation", "checkpoint": str(checkpoints["t5"])}))
    drop_in_by_hand(repo, ModelSpec.from_dict(
        {"name": "no_weights", "task": "generation", "checkpoint": str(repo.parent / "missing")}))
    broken = ("t5_gen", "no_weights")
    wait_for("both broken models UNAVAILABLE",
             lambda: all(state(server, name) == "UNAVAILABLE" for name in broken), server)
    reasons = {name: index(server)[name].get("reason", "") for name in broken}
    assert "architecture 't5'" in reasons["t5_gen"] and "not a causal language model" in reasons["t5_gen"]
    assert "has no config.json" in reasons["no_weights"]
    assert state(server, "text_embedding") == "READY"
    assert embed(server, "text_embedding", TEXTS).shape == (2, 384)
    # The checker names the same problems before any server would see them.
    check = subprocess.run([str(CLI), "check", str(repo)], capture_output=True, text=True, timeout=120)
    assert check.returncode == 1
    assert "t5_gen/1/model.json: [checkpoint]" in check.stdout
    assert "no_weights/1/model.json: [checkpoint]" in check.stdout
