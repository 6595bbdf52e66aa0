"""Helpers for tests against a running server that polls a scratch repository.

They take the server's HTTP address ("127.0.0.1:PORT"), so they work for a
server the test started itself and for one that `ds-triton serve` started.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.http as httpclient

from ds_triton.repository.layout import SHIM_SOURCE
from ds_triton.repository.render import config_text, render_config
from ds_triton.spec import ModelSpec

CLI = Path(sys.executable).parent / "ds-triton"
LOAD_TIMEOUT_S = 240.0  # a Python-backend load imports torch and DeepSpeed in a fresh stub
TEXTS = ["a dropped-in model answers", "without a restart"]


def add_model(repo: Path, name: str, *args: str) -> None:
    """Run the installed ``ds-triton add-model`` command, as a user would."""
    result = subprocess.run(
        [str(CLI), "add-model", name, "--repository", str(repo), *args],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def drop_in_by_hand(
    repo: Path, spec: ModelSpec, checkpoint: Path | None = None, model_json: str | None = None
) -> None:
    """Move a model folder in the way a user would, without add-model's checks.

    ``checkpoint`` is copied to ``1/checkpoint`` (the spec must name "checkpoint");
    ``model_json`` replaces the spec's own text (e.g. to make it invalid).
    """
    staging = repo.parent / f"staging-{spec.name}"
    (staging / "1").mkdir(parents=True)
    if checkpoint is not None:
        shutil.copytree(checkpoint, staging / "1" / "checkpoint")
    (staging / "1" / "model.json").write_text(model_json or spec.dumps())
    (staging / "1" / "model.py").write_text(SHIM_SOURCE)
    (staging / "config.pbtxt").write_text(config_text(render_config(spec, embedding_dimension=8)))
    staging.rename(repo / spec.name)


def index(http_url: str) -> dict[str, dict[str, Any]]:
    """Triton's repository index by model name (state, and reason when not READY)."""
    request = urllib.request.Request(f"http://{http_url}/v2/repository/index", data=b"{}", method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        return {entry["name"]: entry for entry in json.loads(response.read())}


def state(http_url: str, name: str) -> str:
    """A model's state in the index; ABSENT when the index does not list it."""
    return str(index(http_url).get(name, {}).get("state", "ABSENT"))


def wait_for(what: str, condition: Callable[[], bool], http_url: str, alive: Callable[[], bool],
             timeout: float = LOAD_TIMEOUT_S) -> float:
    """Poll ``condition`` until true; return the seconds it took (bounded by ``timeout``)."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if condition():
            return time.monotonic() - start
        assert alive(), "tritonserver exited"
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; index: {index(http_url)}")


def model_config(http_url: str, name: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://{http_url}/v2/models/{name}/config", timeout=10) as response:
        return dict(json.loads(response.read()))


def embed(http_url: str, model: str, texts: Sequence[str]) -> np.ndarray:
    """Embeddings of ``texts`` from ``model`` over HTTP (one request, a row per text)."""
    client = httpclient.InferenceServerClient(http_url)
    try:
        tensor = httpclient.InferInput("text", [len(texts), 1], "BYTES")
        tensor.set_data_from_numpy(np.array([[t.encode()] for t in texts], dtype=np.object_))
        return np.asarray(client.infer(model, [tensor]).as_numpy("embedding"))
    finally:
        client.close()


def generate(http_url: str, model: str, prompt: str, max_tokens: int) -> dict[str, Any]:
    """Greedy continuation only (``exclude_input_in_output``) via Triton's HTTP generate."""
    body = json.dumps({
        "text_input": prompt, "exclude_input_in_output": True,
        "parameters": {"temperature": 0, "max_tokens": max_tokens},
    }).encode()
    url = f"http://{http_url}/v2/models/{model}/generate"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=body, method="POST"), timeout=60) as r:
            return dict(json.loads(r.read()))
    except urllib.error.HTTPError as exc:
        raise AssertionError(f"generate failed: {exc.code} {exc.read()!r}") from None


def hf_embeddings(checkpoint: Path, texts: Sequence[str], pooling: str) -> np.ndarray:
    """What the shared encoder must compute, straight from transformers (normalised)."""
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
    """HF ``generate`` (greedy) in this process: the continuation text only."""
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
