"""Merging requests into one tokenised batch and splitting results back, with per-request errors."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from ds_triton.embedding.batch import EmbeddingOutput, run_batch
from ds_triton.embedding.encoder import TokenizedBatch
from ds_triton.embedding.request import EmbeddingRequest
from ds_triton.errors import InvalidInputError, ModelServingError


class CountingEncoder:
    """Text i becomes one token per character; it embeds as [tokens, row index in its batch]."""

    def __init__(self, max_length: int = 10) -> None:
        self.max_length = max_length
        self.calls: list[list[str]] = []
        self.embedded: list[list[int]] = []

    def tokenize(self, texts: Sequence[str]) -> TokenizedBatch:
        self.calls.append(list(texts))
        ids = [[ord(c) for c in t[: self.max_length]] for t in texts]
        return TokenizedBatch({"input_ids": ids}, np.array([len(t) > self.max_length for t in texts]))

    def embed(self, batch: TokenizedBatch) -> np.ndarray:
        self.embedded.append(batch.lengths)
        return np.array([[n, i] for i, n in enumerate(batch.lengths)], dtype=np.float32)


def request(*texts: str) -> EmbeddingRequest:
    return EmbeddingRequest(tuple(texts))


def test_one_tokenised_batch_for_all_requests_and_rows_go_back_in_order() -> None:
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


def test_truncation_off_rejects_the_overlong_request_before_the_forward() -> None:
    encoder = CountingEncoder(max_length=3)
    requests = [request("ok"), request("abc", "far too long"), request("xy")]
    outcomes = run_batch(encoder, requests, truncate=False)
    assert isinstance(outcomes[1], InvalidInputError)
    assert "row 1 is longer than the model's max_length of 3" in str(outcomes[1])
    # Only the accepted requests' rows reach the forward, and they keep their own rows.
    assert encoder.embedded == [[2, 2]]
    first, last = outcomes[0], outcomes[2]
    assert isinstance(first, EmbeddingOutput) and isinstance(last, EmbeddingOutput)
    assert first.embeddings.tolist() == [[2, 0]] and last.embeddings.tolist() == [[2, 1]]


def test_truncation_on_flags_the_cut_rows() -> None:
    outcomes = run_batch(CountingEncoder(max_length=3), [request("ok", "far too long")])
    output = outcomes[0]
    assert isinstance(output, EmbeddingOutput)
    assert output.truncated.tolist() == [False, True]
    assert output.embeddings[:, 0].tolist() == [2, 3]


def test_nothing_left_after_rejections_skips_the_forward() -> None:
    encoder = CountingEncoder(max_length=3)
    outcomes = run_batch(encoder, [request("far too long")], truncate=False)
    assert isinstance(outcomes[0], InvalidInputError)
    assert encoder.embedded == []


def test_encoder_returning_wrong_row_count_is_an_error() -> None:
    class Broken(CountingEncoder):
        def embed(self, batch: TokenizedBatch) -> np.ndarray:
            return super().embed(batch)[:-1]

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
