"""text_embedding on a real tritonserver: HTTP, gRPC, numerics, batching, perf_analyzer."""

from __future__ import annotations

import concurrent.futures
import json
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from ds_triton.server_process.tritonserver import TritonServer
from tests.server.perf_tool import perf_analyzer_throughput

pytestmark = pytest.mark.server

MODEL = "text_embedding"
SENTENCES = [
    "hello world",
    "The quick brown fox jumps over the lazy dog.",
    "Triton batches requests dynamically; DeepSpeed runs the forward pass.",
    "a",
    "Ünïcödé text, emoji 🚀 and 中文 are fine too.",
]


def embed_http(server: TritonServer, texts: list[str]) -> dict[str, np.ndarray]:
    client = httpclient.InferenceServerClient(server.http_url)
    tensor = httpclient.InferInput("text", [len(texts), 1], "BYTES")
    tensor.set_data_from_numpy(np.array(texts, dtype=object).reshape(-1, 1))
    result = client.infer(MODEL, [tensor])
    return {name: result.as_numpy(name) for name in ("embedding", "truncated")}


def embed_grpc(server: TritonServer, texts: list[str]) -> np.ndarray:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    tensor = grpcclient.InferInput("text", [len(texts), 1], "BYTES")
    tensor.set_data_from_numpy(np.array(texts, dtype=object).reshape(-1, 1))
    return client.infer(MODEL, [tensor]).as_numpy("embedding")


def model_stats(server: TritonServer) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://{server.http_url}/v2/models/{MODEL}/stats") as response:
        return json.load(response)["model_stats"][0]


def test_http_and_grpc_match_sentence_transformers(
    triton_server: TritonServer, reference_embeddings: Any
) -> None:
    expected = reference_embeddings(SENTENCES)
    http = embed_http(triton_server, SENTENCES)
    grpc = embed_grpc(triton_server, SENTENCES)
    assert http["embedding"].shape == (len(SENTENCES), 384)
    assert http["embedding"].dtype == np.float32
    assert np.abs(http["embedding"] - expected).max() <= 1e-5
    assert np.abs(grpc - expected).max() <= 1e-5
    assert not http["truncated"].any()


def test_plain_json_curl_request_returns_384_floats(
    triton_server: TritonServer, reference_embeddings: Any
) -> None:
    body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1, 1], "data": ["hello world"]}]}
    request = urllib.request.Request(
        f"http://{triton_server.http_url}/v2/models/{MODEL}/infer", data=json.dumps(body).encode()
    )
    with urllib.request.urlopen(request) as response:
        outputs = {o["name"]: o for o in json.load(response)["outputs"]}
    values = np.array(outputs["embedding"]["data"], dtype=np.float32)
    assert values.shape == (384,)
    assert np.abs(values - reference_embeddings(["hello world"])[0]).max() <= 1e-5


def test_text_over_max_length_is_truncated_and_flagged(
    triton_server: TritonServer, reference_embeddings: Any
) -> None:
    long_text = "tokens " * 600  # far past the model's 256-token max_seq_length
    result = embed_http(triton_server, ["short text", long_text])
    assert result["truncated"].reshape(-1).tolist() == [False, True]
    # sentence-transformers truncates at the same limit, so the vectors agree.
    expected = reference_embeddings(["short text", long_text])
    assert np.abs(result["embedding"] - expected).max() <= 1e-5


def test_concurrent_requests_share_forward_passes(triton_server: TritonServer) -> None:
    before = model_stats(triton_server)
    requests = 96
    with concurrent.futures.ThreadPoolExecutor(max_workers=24) as pool:
        list(pool.map(lambda i: embed_http(triton_server, [f"sentence number {i}"]), range(requests)))
    after = model_stats(triton_server)
    inferences = after["inference_count"] - before["inference_count"]
    executions = after["execution_count"] - before["execution_count"]
    assert inferences == requests
    # One execute() served several requests at once.
    assert executions < inferences, (executions, inferences)


def test_perf_analyzer_reports_throughput(triton_server: TritonServer, tmp_path: Path) -> None:
    data = {"data": [{"text": [s]} for s in SENTENCES]}
    throughput = perf_analyzer_throughput(
        MODEL, triton_server.http_url, data, tmp_path, "-i", "http", "--concurrency-range", "4"
    )
    assert throughput > 0
