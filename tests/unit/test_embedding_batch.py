"""Merging requests into one forward and splitting results back, with per-request errors."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from ds_triton.embedding.batch import EmbeddingOutput, run_batch
from ds_triton.embedding.encoder import EncodeResult
from ds_triton.embedding.request import EmbeddingRequest
from ds_triton.errors import InvalidInputError, ModelServingError


class CountingEncoder:
    """Encodes text i as [len(text), i]; flags texts longer than ``max_length`` characters."""

    def __init__(self, max_length: int = 10) -> None:
        self.max_length = max_length
        self.calls: list[list[str]] = []

    def encode(self, texts: Sequence[str]) -> EncodeResult:
        self.calls.append(list(texts))
        rows = np.array([[len(t), i] for i, t in enumerate(texts)], dtype=np.float32)
        return EncodeResult(rows, np.array([len(t) > self.max_length for t in texts]))


def request(*texts: str) -> EmbeddingRequest:
    return EmbeddingRequest(tuple(texts))


def test_one_forward_for_all_requests_and_rows_go_back_in_order() -> None:
    encoder = CountingEncoder()
    outcomes = run_batch(encoder, [request("a"), request("bb", "ccc"), request("dddd")])
    assert encoder.calls == [["a", "bb", "ccc", "dddd"]]
    assert all(isinstance(o, EmbeddingOutput) for o in outcomes)
    shapes = [o.embeddings.shape for o in outcomes if isinstance(o, EmbeddingOutput)]
    assert shapes == [(1, 2), (2, 2), (1, 2)]
    second = outcomes[1]
    assert isinstance(second, EmbeddingOutput)
    assert second.embeddings[:, 0].tolist() == [2, 3]


def test_bad_requests_keep_their_error_and_do_not_reach_the_encoder() -> None:
    encoder = CountingEncoder()
    bad = InvalidInputError("row 0 is empty")
    outcomes = run_batch(encoder, [request("a"), bad, request("b")])
    assert outcomes[1] is bad
    assert encoder.calls == [["a", "b"]]


def test_all_bad_requests_skip_the_forward() -> None:
    encoder = CountingEncoder()
    errors: list[EmbeddingRequest | ModelServingError] = [InvalidInputError("x"), InvalidInputError("y")]
    assert run_batch(encoder, errors) == errors
    assert encoder.calls == []


def test_truncation_off_rejects_only_the_overlong_request() -> None:
    outcomes = run_batch(
        CountingEncoder(max_length=3), [request("ok"), request("far too long")], truncate=False
    )
    assert isinstance(outcomes[0], EmbeddingOutput)
    assert isinstance(outcomes[1], InvalidInputError)
    assert "max_length of 3" in str(outcomes[1])


def test_encoder_returning_wrong_row_count_is_an_error() -> None:
    class Broken(CountingEncoder):
        def encode(self, texts: Sequence[str]) -> EncodeResult:
            result = super().encode(texts)
            return EncodeResult(result.embeddings[:-1], result.truncated)

    with pytest.raises(RuntimeError, match="rows for 2 texts"):
        run_batch(Broken(), [request("a", "b")])


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([b""], "row 0 is empty"),
        ([b"fine", b" \n"], "row 1 is empty"),
        ([b"\xff"], "not valid UTF-8"),
        ([7], "must be a string"),
        ([], "holds no text"),
    ],
)
def test_request_validation_names_the_row(rows: list[object], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        EmbeddingRequest.from_raw(rows)


def test_request_decodes_utf8() -> None:
    assert EmbeddingRequest.from_raw(["é".encode(), "plain"]).texts == ("é", "plain")
