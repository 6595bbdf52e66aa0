"""Request/response shaping, chunking, sampling validation, model facts and the SSE parser."""

from __future__ import annotations

import asyncio
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import numpy as np
import pytest

from ds_triton_client.codec import (
    chunk_bounds,
    combine_pieces,
    embedding_inputs,
    embedding_output,
    fields_to_tensors,
    generation_fields,
    generation_piece,
    normalize_stats,
)
from ds_triton_client.concurrency import gather_bounded, map_bounded
from ds_triton_client.errors import InvalidInputError
from ds_triton_client.model_info import ModelInfo
from ds_triton_client.sse import SSEParser


def test_chunks_cover_every_row_once_in_order() -> None:
    assert chunk_bounds(130, 64) == [(0, 64), (64, 128), (128, 130)]
    assert chunk_bounds(0, 64) == []
    with pytest.raises(ValueError):
        chunk_bounds(3, 0)


def test_embedding_tensor_is_bytes_with_batch_dim_first() -> None:
    (tensor,) = embedding_inputs(["a", "bé"])
    assert tensor.name == "text" and tensor.datatype == "BYTES" and tensor.data.shape == (2, 1)
    assert tensor.data[1, 0] == "bé".encode()
    with pytest.raises(InvalidInputError, match=r"texts\[1\]"):
        embedding_inputs(cast(Any, ["ok", 3]))


def test_embedding_output_is_checked_against_the_request() -> None:
    out = embedding_output({"embedding": np.ones((2, 4), dtype=np.float64)}, 2)
    assert out.dtype == np.float32 and out.shape == (2, 4)
    with pytest.raises(InvalidInputError):
        embedding_output({"embedding": np.ones((3, 4))}, 2)


def test_sampling_is_validated_and_named() -> None:
    fields = generation_fields(
        "hi", True, {"max_tokens": 4, "temperature": 0.0, "stop": ["\n"], "seed": None}
    )
    assert json.loads(str(fields["sampling_parameters"])) == {
        "max_tokens": 4,
        "stop": ["\n"],
        "temperature": 0.0,
    }
    assert fields["stream"] is True and fields["exclude_input_in_output"] is True
    with pytest.raises(InvalidInputError, match="'beams'"):
        generation_fields("hi", False, {"beams": 2})
    with pytest.raises(InvalidInputError, match="'max_tokens'"):
        generation_fields("hi", False, {"max_tokens": True})
    with pytest.raises(InvalidInputError, match="prompt"):
        generation_fields("", False, {})


def test_generation_tensors_follow_the_model_batching() -> None:
    fields = generation_fields("hi", False, {})
    unbatched = {t.name: t for t in fields_to_tensors(fields, batched=False)}
    batched = {t.name: t for t in fields_to_tensors(fields, batched=True)}
    assert unbatched["text_input"].data.shape == (1,) and batched["text_input"].data.shape == (1, 1)
    assert unbatched["stream"].datatype == "BOOL" and unbatched["sampling_parameters"].datatype == "BYTES"


def test_pieces_from_tensors_and_json_combine_into_a_result() -> None:
    first = generation_piece(
        {
            "text_output": np.array([b"Hel"], dtype=object),
            "num_input_tokens": np.array([5], dtype=np.uint32),
            "num_output_tokens": np.array([1], dtype=np.uint32),
        }
    )
    second = generation_piece({"text_output": "lo", "num_output_tokens": 2, "finish_reason": "length"})
    result = combine_pieces([first, second], "http://h:1")
    assert (result.text, result.num_input_tokens, result.num_output_tokens) == ("Hello", 5, 3)
    assert result.finish_reason == "length" and result.endpoint == "http://h:1"


def test_a_response_before_the_last_has_no_finish_reason() -> None:
    # The vLLM interface writes str(None) until the last response.
    piece = generation_piece({"text_output": np.array([b"x"], dtype=object),
                              "finish_reason": np.array([b"None"], dtype=object)})  # fmt: skip
    assert piece.finish_reason is None


def test_stats_counters_become_ints_but_versions_stay_strings() -> None:
    stats = normalize_stats({"model_stats": [{"version": "1", "inference_count": "12", "x": {"ns": "5"}}]})
    assert stats == {"model_stats": [{"version": "1", "inference_count": 12, "x": {"ns": 5}}]}


def test_model_info_reads_http_and_grpc_config_shapes() -> None:
    http = ModelInfo.from_config(
        {"name": "e", "max_batch_size": 64, "output": [{"name": "embedding", "dims": [384]}]}
    )
    grpc = ModelInfo.from_config(
        {
            "name": "g",
            "output": [{"name": "text_output", "dims": ["-1"]}],
            "model_transaction_policy": {"decoupled": True},
        }
    )
    assert http.rows_per_request == 64 and http.output_dims["embedding"] == (384,)
    assert grpc.max_batch_size == 0 and grpc.rows_per_request == 1 and grpc.decoupled


def test_model_info_from_metadata_when_the_config_api_is_restricted() -> None:
    embedding = ModelInfo.from_metadata(
        {
            "name": "e",
            "inputs": [{"name": "text", "datatype": "BYTES", "shape": [-1, 1]}],
            "outputs": [{"name": "embedding", "shape": ["-1", "384"]}],  # gRPC JSON: int64 as str
        }
    )
    generation = ModelInfo.from_metadata(
        {
            "name": "g",
            "inputs": [{"name": "text_input", "shape": [1]}],
            "outputs": [{"name": "text_output", "shape": [-1]}],
        }
    )
    # Batched, but the limit is unknown: one row per request is always within it.
    assert (embedding.max_batch_size, embedding.rows_per_request, embedding.output_dims) == (
        1, 1, {"embedding": (384,)},
    )  # fmt: skip
    assert generation.max_batch_size == 0 and generation.output_dims == {"text_output": (-1,)}


def test_sse_parser_handles_split_chunks_crlf_comments_and_multiline_data() -> None:
    parser = SSEParser()
    stream = b': keep-alive\r\ndata: {"a":\r\ndata: 1}\r\n\r\ndata: {"b": 2}\n\ndata: {"c"'
    events: list[str] = []
    for i in range(len(stream)):
        events += parser.feed(stream[i : i + 1])
    assert events == ['{"a":\n1}', '{"b": 2}']
    events += parser.feed(b": 3}")
    assert parser.close() == ['{"c": 3}']


def test_sse_parser_bounds_an_unterminated_event() -> None:
    parser = SSEParser(max_event_bytes=16)
    with pytest.raises(ValueError):
        parser.feed(b"data: " + b"x" * 32)


def test_map_bounded_keeps_order_and_limits_in_flight() -> None:
    lock = threading.Lock()
    active = peak = 0

    def work(i: int) -> int:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        threading.Event().wait(0.002)
        with lock:
            active -= 1
        return i * i

    with ThreadPoolExecutor(8) as pool:
        assert map_bounded(pool, work, list(range(40)), limit=3) == [i * i for i in range(40)]
    assert peak <= 3


async def test_gather_bounded_keeps_order_limits_tasks_and_cancels_on_error() -> None:
    active = peak = 0

    async def work(i: int) -> int:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.001 * (i % 3))
        active -= 1
        if i == 99:
            raise RuntimeError("row 99")
        return -i

    assert await gather_bounded(work, list(range(50)), limit=4) == [-i for i in range(50)]
    assert peak <= 4
    with pytest.raises(RuntimeError, match="row 99"):
        await gather_bounded(work, list(range(100)), limit=4)
