"""The client's reading of log-probabilities (vLLM backend's JSON), from gRPC tensors and HTTP JSON."""

from __future__ import annotations

import json

import numpy as np

from ds_triton_client.codec import combine_pieces, generation_fields, generation_piece


def entry(chosen: int, rank: int, *top: int) -> dict[str, dict[str, object]]:
    def one(token: int, rank: int) -> dict[str, object]:
        return {"logprob": -float(rank), "rank": rank, "decoded_token": f"<{token}>"}

    listed = {str(chosen): one(chosen, rank)}
    for position, token in enumerate(top, start=1):
        listed.setdefault(str(token), one(token, position))
    return listed


def test_logprobs_are_asked_for_only_with_the_logprobs_key() -> None:
    assert "return_logprobs" not in generation_fields("hi", True, {"max_tokens": 2})
    fields = generation_fields("hi", True, {"logprobs": 2})
    assert fields["return_logprobs"] is True and fields["return_cumulative_logprob"] is True


def test_pieces_from_tensors_and_json_combine_their_logprobs() -> None:
    first = {
        "text_output": np.array([b"<5>"], dtype=object),
        "logprobs": np.array([json.dumps([entry(5, 1, 5, 9)]).encode()], dtype=object),
        "cumulative_logprob": np.array([-1.0], dtype=np.float32),
        "prompt_logprobs": np.array([json.dumps([None, entry(3, 4, 1, 2)]).encode()], dtype=object),
    }
    second = {  # HTTP generate: JSON values, the logprobs still a JSON string
        "text_output": "<7>", "logprobs": json.dumps([entry(7, 3, 1, 2)]), "cumulative_logprob": -4.0,
    }  # fmt: skip
    result = combine_pieces([generation_piece(first), generation_piece(second)])
    assert result.logprobs is not None and result.prompt_logprobs is not None
    assert "".join(e.token.text for e in result.logprobs) == result.text == "<5><7>"
    low = result.logprobs[1]
    assert (low.token.token_id, low.token.rank) == (7, 3)
    assert [c.token_id for c in low.listed] == [1, 2, 7]  # best first; the chosen one ranks lower
    assert [c.rank for c in result.logprobs[0].listed] == [1, 2]
    assert result.cumulative_logprob == -4.0
    assert result.prompt_logprobs[0] is None and result.prompt_logprobs[1] is not None
    assert result.as_dict()["logprobs"][1]["listed"][0]["token_id"] == 1  # type: ignore[index]


def test_null_logprobs_mean_none() -> None:
    piece = generation_piece({"text_output": "x", "logprobs": "null"})
    assert piece.logprobs is None and combine_pieces([piece]).as_dict().keys() >= {"text"}
    assert "logprobs" not in combine_pieces([piece]).as_dict()
