"""Bad input to text_embedding: a clear per-request error, good neighbours unharmed, server up."""

from __future__ import annotations

import concurrent.futures
import json
import urllib.error
import urllib.request
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from ds_triton.server_process.tritonserver import TritonServer

pytestmark = pytest.mark.server

MODEL = "text_embedding"


def post_infer(server: TritonServer, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        f"http://{server.http_url}/v2/models/{MODEL}/infer", data=json.dumps(body).encode()
    )
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def text_input(data: list[Any], shape: list[int] | None = None, datatype: str = "BYTES") -> dict[str, Any]:
    return {"name": "text", "datatype": datatype, "shape": shape or [len(data), 1], "data": data}


def infer_bytes(server: TritonServer, rows: list[bytes], protocol: str) -> np.ndarray:
    module: Any = httpclient if protocol == "http" else grpcclient
    url = server.http_url if protocol == "http" else server.grpc_url
    tensor = module.InferInput("text", [len(rows), 1], "BYTES")
    tensor.set_data_from_numpy(np.array(rows, dtype=object).reshape(-1, 1))
    return module.InferenceServerClient(url).infer(MODEL, [tensor]).as_numpy("embedding")


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"inputs": [text_input([""])]}, 400, "row 0 is empty"),
        ({"inputs": [text_input(["   "])]}, 400, "row 0 is empty"),
        ({"inputs": [text_input(["fine", ""])]}, 400, "row 1 is empty"),
        ({"inputs": [text_input([1.5], datatype="FP32")]}, 400, "data-type is 'FP32'"),
        ({"inputs": [text_input(["a", "b"], shape=[1, 2])]}, 400, "shape"),
        ({"inputs": []}, 400, "text"),
        ({"inputs": [{**text_input(["x"]), "name": "txt"}]}, 400, "txt"),
    ],
    ids=[
        "empty",
        "blank",
        "second-row-empty",
        "wrong-dtype",
        "wrong-shape",
        "missing-input",
        "unknown-input",
    ],
)
def test_bad_json_request_gets_a_clear_error(
    triton_server: TritonServer, body: dict[str, Any], status: int, message: str
) -> None:
    code, answer = post_infer(triton_server, body)
    assert code == status
    assert message in answer["error"], answer


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_non_utf8_bytes_are_rejected_by_name(triton_server: TritonServer, protocol: str) -> None:
    with pytest.raises(InferenceServerException, match="not valid UTF-8"):
        infer_bytes(triton_server, [b"ok", b"\xff\xfe broken"], protocol)


def test_good_requests_beside_bad_ones_succeed(triton_server: TritonServer) -> None:
    """Interleave bad and good requests so the dynamic batcher mixes them in one execute()."""
    rows: list[bytes] = [b"good text %d" % i if i % 3 else (b"" if i % 2 else b"\xc3\x28") for i in range(60)]

    def call(row: bytes) -> str:
        try:
            return "ok" if infer_bytes(triton_server, [row], "grpc").shape == (1, 384) else "bad-shape"
        except InferenceServerException as error:
            return error.message() or ""

    with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
        outcomes = list(pool.map(call, rows))
    for row, outcome in zip(rows, outcomes, strict=True):
        if row.startswith(b"good"):
            assert outcome == "ok", (row, outcome)
        elif row == b"":
            assert "empty" in outcome
        else:
            assert "not valid UTF-8" in outcome
    # And the server keeps serving afterwards.
    assert httpclient.InferenceServerClient(triton_server.http_url).is_model_ready(MODEL)
    assert infer_bytes(triton_server, [b"still here"], "http").shape == (1, 384)
