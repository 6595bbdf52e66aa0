"""Incremental detokenisation and stop strings, with the shipped tokenizer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ds_triton.generation.detokenizer import IncrementalDetokenizer
from ds_triton.generation.stopping import StopStringMatcher

CHECKPOINT = Path(__file__).resolve().parents[2] / "model_repository/text_generation/1/checkpoint"


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    from transformers import AutoTokenizer

    if not (CHECKPOINT / "tokenizer.json").is_file():
        pytest.skip("run `make setup` to create the tiny checkpoint")
    return AutoTokenizer.from_pretrained(CHECKPOINT)


@pytest.mark.parametrize(
    "text",
    ["walking towards the unbelievable sunset", "ünïcödé 中文 text, with punctuation!", "a"],
)
def test_deltas_add_up_to_the_decoded_text(tokenizer: Any, text: str) -> None:
    prompt = tokenizer("Prompt words")["input_ids"]
    generated = tokenizer(text, add_special_tokens=False)["input_ids"]
    detokenizer = IncrementalDetokenizer(tokenizer, prompt)
    streamed = "".join(detokenizer.add(token) for token in generated)
    assert streamed.strip() == tokenizer.decode(generated, skip_special_tokens=True).strip()


def test_prompt_round_trips(tokenizer: Any) -> None:
    ids = tokenizer("Hello world, the quick brown fox.")["input_ids"]
    assert ids[0] == tokenizer.bos_token_id and tokenizer.eos_token_id not in ids
    assert tokenizer.decode(ids, skip_special_tokens=True) == "hello world, the quick brown fox."


def test_stop_string_is_cut_and_never_streamed() -> None:
    matcher = StopStringMatcher(["END"])
    parts = [matcher.feed(d) for d in ["abc E", "N", "D tail"]]
    assert [p.text for p in parts] == ["abc ", "", ""]
    assert [p.stopped for p in parts] == [False, False, True]


def test_held_text_is_released_when_it_is_not_a_stop() -> None:
    matcher = StopStringMatcher(["STOP", "xyz"])
    assert matcher.feed("ST").text == ""
    assert matcher.feed("ay").text == "STay"
    assert matcher.feed("x").text == ""
    assert matcher.flush() == "x"


def test_earliest_stop_string_wins() -> None:
    result = StopStringMatcher(["bb", "a"]).feed("xxbba")
    assert result == result.__class__("xx", True)


def test_without_stop_strings_text_passes_through() -> None:
    assert StopStringMatcher([]).feed("anything").text == "anything"
