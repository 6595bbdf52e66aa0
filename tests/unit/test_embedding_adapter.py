"""The Triton adapter of the embedding task with a stub pb_utils: one execute, mixed requests."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ds_triton.backend import embedding as adapter
from ds_triton.embedding.encoder import TokenizedBatch
from ds_triton.spec import EmbeddingSpec
from tests.unit import fake_pb_utils as pb


class FakeEncoder:
    max_length = 8

    def __init__(self) -> None:
        self.calls = 0

    def tokenize(self, texts: Sequence[str]) -> TokenizedBatch:
        return TokenizedBatch({"input_ids": [[1] for _ in texts]}, np.zeros(len(texts), bool))

    def embed(self, batch: TokenizedBatch) -> np.ndarray:
        self.calls += 1
        return np.ones((len(batch), 4), np.float32)


class TrimmerSpy:
    """Records the busy/idle calls an IdleTrimmer would get."""

    def __init__(self) -> None:
        self.events: list[str] = []

    def busy(self) -> None:
        self.events.append("busy")

    def idle(self) -> None:
        self.events.append("idle")


def handler_with(encoder: Any, trimmer: Any = None) -> adapter.EmbeddingHandler:
    handler = object.__new__(adapter.EmbeddingHandler)
    handler._options = EmbeddingSpec()
    handler._encoder = encoder
    handler._trimmer = trimmer or TrimmerSpy()
    return handler


def text_request(*rows: bytes) -> pb.InferenceRequest:
    return pb.InferenceRequest([pb.Tensor("text", np.array(rows, dtype=object).reshape(-1, 1))])


def test_mixed_batch_embedded_together_with_per_request_errors() -> None:
    encoder = FakeEncoder()
    responses = handler_with(encoder).execute(
        [text_request(b"good"), text_request(b"\xff"), text_request(b"a", b"b"), pb.InferenceRequest([])]
    )
    assert encoder.calls == 1
    errors = [r.error() for r in responses]
    assert errors[0] is None and errors[2] is None
    assert errors[1] is not None and "UTF-8" in errors[1].message()
    assert errors[1].code() == pb.TritonError.INVALID_ARG
    assert errors[3] is not None and "missing input 'text'" in errors[3].message()
    second = pb.get_output_tensor_by_name(responses[2], "embedding")
    assert second is not None and second.as_numpy().shape == (2, 4)


def test_forward_failure_fails_the_batch_with_internal_error_not_the_server() -> None:
    class Exploding(FakeEncoder):
        def embed(self, batch: TokenizedBatch) -> np.ndarray:
            raise RuntimeError("out of memory")

    responses = handler_with(Exploding()).execute([text_request(b"x"), text_request(b"")])
    first, second = (r.error() for r in responses)
    assert first is not None and first.code() == pb.TritonError.INTERNAL
    assert "out of memory" in first.message()
    assert second is not None and second.code() == pb.TritonError.INVALID_ARG


def test_execute_is_busy_for_the_idle_trimmer_even_when_the_forward_fails() -> None:
    class Exploding(FakeEncoder):
        def embed(self, batch: TokenizedBatch) -> np.ndarray:
            raise RuntimeError("boom")

    trimmer = TrimmerSpy()
    handler_with(FakeEncoder(), trimmer).execute([text_request(b"x")])
    handler_with(Exploding(), trimmer).execute([text_request(b"x")])
    assert trimmer.events == ["busy", "idle", "busy", "idle"]
