"""Clients of the text_generation model for server tests, as Triton's vLLM-backend clients do it.

gRPC ``stream_infer`` with several requests on one stream, HTTP ``generate``
and ``generate_stream`` bodies, the model's custom metrics from ``/metrics``,
and HF ``generate`` on the same checkpoint as the reference.
"""

from __future__ import annotations

import json
import queue
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient

from ds_triton.server_process.tritonserver import TritonServer

MODEL = "text_generation"
BPE_MODEL = "qwen2_byte_bpe"  # tiny_checkpoints.make_byte_level_qwen2
PROCESSED_MODEL = "llama_processed"  # the shipped model with "logprobs_mode": "processed_logprobs"
FAULTY_MODEL = PROCESSED_MODEL  # its model.py is fault_injecting_model.py (inert unless asked)
CHECKPOINT = Path(__file__).resolve().parents[2] / "model_repository/text_generation/1/checkpoint"

# -- clients -------------------------------------------------------------------


@dataclass
class Stream:
    """Responses of one request: text pieces and the optional outputs, or its error."""

    texts: list[str] = field(default_factory=list)
    num_input_tokens: list[int] = field(default_factory=list)
    num_output_tokens: list[int] = field(default_factory=list)
    finish_reasons: list[str] = field(default_factory=list)
    error: str | None = None  # gRPC streams carry an error's message, not its code
    final: bool = False

    @property
    def text(self) -> str:
        return "".join(self.texts)

    @property
    def tokens(self) -> int:
        """Generated tokens (needs return_num_output_tokens); a response may carry several
        when the client lags behind (merged like vLLM's output collector)."""
        return sum(self.num_output_tokens)


def vllm_inputs(
    prompt: str | bytes,
    stream: bool | None = True,
    sampling: dict[str, Any] | bytes | None = None,
    exclude_input: bool | None = None,
    counts: bool = False,
) -> list[grpcclient.InferInput]:
    """Inputs exactly as the vLLM backend's clients build them."""

    def tensor(name: str, value: Any, datatype: str) -> grpcclient.InferInput:
        item = grpcclient.InferInput(name, [1], datatype)
        item.set_data_from_numpy(np.array([value], dtype=bool if datatype == "BOOL" else object))
        return item

    data = prompt.encode("utf-8") if isinstance(prompt, str) else prompt
    inputs = [tensor("text_input", data, "BYTES")]
    if stream is not None:
        inputs.append(tensor("stream", stream, "BOOL"))
    if sampling is not None:
        raw = sampling if isinstance(sampling, bytes) else json.dumps(sampling).encode()
        inputs.append(tensor("sampling_parameters", raw, "BYTES"))
    if exclude_input is not None:
        inputs.append(tensor("exclude_input_in_output", exclude_input, "BOOL"))
    if counts:
        for name in ("return_num_input_tokens", "return_num_output_tokens", "return_finish_reason"):
            inputs.append(tensor(name, True, "BOOL"))
    return inputs


def grpc_generate(
    url: str, requests: Sequence[list[grpcclient.InferInput]], timeout: float = 120.0, model: str = MODEL
) -> list[Stream]:
    """Send every request on ONE gRPC stream (concurrently) and collect each one's responses."""
    events: queue.Queue[tuple[Any, Any]] = queue.Queue()
    streams = [Stream() for _ in requests]
    client = grpcclient.InferenceServerClient(url)
    client.start_stream(callback=lambda result, error: events.put((result, error)))
    try:
        for index, inputs in enumerate(requests):
            client.async_stream_infer(
                model, inputs, request_id=str(index), enable_empty_final_response=True
            )
        pending = len(requests)
        while pending:
            result, error = events.get(timeout=timeout)
            if error is not None:
                # Errors carry no request id; tests with errors send one request per stream.
                target = next(s for s in streams if not s.final)
                target.error, target.final = str(error), True
                pending -= 1
                continue
            response = result.get_response()
            stream = streams[int(response.id)]
            record_response(stream, result)
            if response.parameters["triton_final_response"].bool_param:
                stream.final = True
                pending -= 1
    finally:
        client.stop_stream()
        client.close()
    return streams


def record_response(stream: Stream, result: Any) -> None:
    """Add one gRPC stream response (``result``) to ``stream``."""
    text = result.as_numpy("text_output")
    if text is None:  # an empty final response
        return
    stream.texts.extend(t.decode("utf-8") for t in text.reshape(-1))
    for name, values in (
        ("num_input_tokens", stream.num_input_tokens),
        ("num_output_tokens", stream.num_output_tokens),
    ):
        array = result.as_numpy(name)
        if array is not None:
            values.extend(int(v) for v in array.reshape(-1))
    reasons = result.as_numpy("finish_reason")
    if reasons is not None:
        stream.finish_reasons.extend(r.decode() for r in reasons.reshape(-1))


def http_post(server: TritonServer, path: str, body: dict[str, Any]) -> tuple[int, str]:
    request = urllib.request.Request(
        f"http://{server.http_url}/v2/models/{MODEL}/{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, response.read().decode("utf-8")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8")


def sse_events(text: str) -> list[dict[str, Any]]:
    return [json.loads(line[len("data: ") :]) for line in text.splitlines() if line.startswith("data: ")]


def wait_for_metrics(
    server: TritonServer, ready: Any, attempts: int = 300
) -> dict[str, float]:
    """Metrics once ``ready(samples)`` holds; counters are published a moment after the
    last response, so a test polls (bounded) instead of reading once."""
    for _ in range(attempts):
        samples = generation_metrics(server)
        if ready(samples):
            return samples
        time.sleep(0.1)
    return generation_metrics(server)


def settled_generation_metrics(
    server: TritonServer, quiet_s: float = 0.5, timeout_s: float = 30.0
) -> dict[str, float]:
    """The metrics once two reads ``quiet_s`` apart agree: an earlier test's last counters can
    reach the server after its responses, and a baseline read before they land would count
    them in the next test's deltas."""
    deadline = time.monotonic() + timeout_s
    last = generation_metrics(server)
    while True:
        time.sleep(quiet_s)
        now = generation_metrics(server)
        if now == last or time.monotonic() > deadline:
            return now
        last = now


def generation_metrics(server: TritonServer) -> dict[str, float]:
    """The ds_triton_generation_* samples of text_generation, keyed by name and labels."""
    with urllib.request.urlopen(server.metrics_url, timeout=10) as response:
        text = response.read().decode()
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("ds_triton_generation") and f'model="{MODEL}"' in line:
            key, value = line.rsplit(" ", 1)
            labels = dict(re.findall(r'(\w+)="([^"]*)"', key))
            extra = ",".join(f"{k}={v}" for k, v in sorted(labels.items()) if k not in ("model", "version"))
            samples[key.split("{")[0] + (f"[{extra}]" if extra else "")] = float(value)
    return samples


HFReference = Callable[[str, int], tuple[str, int]]


def hf_greedy_reference(checkpoint: Path) -> HFReference:
    """HF ``generate`` (greedy) on ``checkpoint`` in this process: (prompt, max_tokens) ->
    (continuation text as it continues the prompt's text, generated token count)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32).eval()

    def generate(prompt: str, max_tokens: int) -> tuple[str, int]:
        inputs = tokenizer(prompt, return_tensors="pt")
        with torch.inference_mode():
            out = model.generate(**inputs, max_new_tokens=max_tokens, do_sample=False)
        full = str(tokenizer.decode(out[0].tolist(), skip_special_tokens=True))
        prompt_text = str(tokenizer.decode(inputs["input_ids"][0].tolist(), skip_special_tokens=True))
        return full[len(prompt_text) :], int(out.shape[1] - inputs["input_ids"].shape[1])

    return generate


def prompt_tokens(checkpoint: Path, prompt: str) -> int:
    """How many tokens the checkpoint's tokenizer makes of ``prompt`` (special ones included)."""
    from transformers import AutoTokenizer

    return len(AutoTokenizer.from_pretrained(checkpoint)(prompt)["input_ids"])
