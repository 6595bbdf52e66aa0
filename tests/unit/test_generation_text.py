"""Incremental detokenisation and stop strings, with the shipped tokenizer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ds_triton.generation.detokenizer import IncrementalDetokenizer
from ds_triton.generation.stopping import StopStringMatcher
from tests.repository.tiny_checkpoints import byte_level_bpe_tokenizer

CHECKPOINT = Path(__file__).resolve().parents[2] / "model_repository/text_generation/1/checkpoint"


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    from transformers import AutoTokenizer

    if not (CHECKPOINT / "tokenizer.json").is_file():
        pytest.skip("run `make setup` to create the tiny checkpoint")
    return AutoTokenizer.from_pretrained(CHECKPOINT)


def continuation(tokenizer: Any, prompt: list[int], generated: list[int]) -> str:
    """What HF decode of prompt + generated adds to the prompt's text (the reference)."""
    full = tokenizer.decode(prompt + generated, skip_special_tokens=True)
    return str(full[len(tokenizer.decode(prompt, skip_special_tokens=True)) :])


def stream(tokenizer: Any, prompt: list[int], generated: list[int]) -> str:
    detokenizer = IncrementalDetokenizer(tokenizer, prompt)
    return "".join(detokenizer.add(token) for token in generated) + detokenizer.flush()


@pytest.mark.parametrize(
    "text",
    [
        "walking towards the unbelievable sunset",
        "ünïcödé 中文 text, with punctuation! and a long tail of words to slide the window over",
        "a",
    ],
)
def test_deltas_add_up_to_the_decoded_text(tokenizer: Any, text: str) -> None:
    prompt = tokenizer("Prompt words")["input_ids"]
    generated = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert stream(tokenizer, prompt, generated) == continuation(tokenizer, prompt, generated)


@pytest.fixture(scope="module")
def byte_level_bpe() -> Any:
    return byte_level_bpe_tokenizer()


def test_byte_level_bpe_streams_split_characters_and_flushes_the_rest_as_hf_decodes(
    byte_level_bpe: Any,
) -> None:
    prompt = byte_level_bpe("hello")["input_ids"]
    generated = byte_level_bpe(" 中文 😀 café", add_special_tokens=False)["input_ids"]
    # Single bytes of 4-byte emoji and 3-byte CJK are tokens of their own here.
    assert any(byte_level_bpe.decode([t]).endswith("\ufffd") for t in generated)
    assert stream(byte_level_bpe, prompt, generated) == continuation(byte_level_bpe, prompt, generated)
    # Cut inside the emoji: the held-back bytes come out as HF decode shows them (U+FFFD).
    emoji_bytes = [t for t in generated if byte_level_bpe.decode([t]) == "\ufffd"]
    cut = generated[: generated.index(emoji_bytes[0]) + 1]
    streamed = stream(byte_level_bpe, prompt, cut)
    assert streamed == continuation(byte_level_bpe, prompt, cut) and streamed.endswith("\ufffd")


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
