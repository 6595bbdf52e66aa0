"""What a sequence sends: log-probabilities that spell the text, stop tokens, special tokens.

Uses a byte-level BPE tokenizer (multi-byte characters span tokens, so text is
held back) and the shipped WordPiece one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ds_triton.generation.logprobs import LogprobEntry, TokenLogprobs, TokenTexts
from ds_triton.generation.outbox import merge_outputs
from ds_triton.generation.params import SamplingParams
from ds_triton.generation.request import GenerationRequest
from ds_triton.generation.sequence import FinishReason, GenerationOutput, Sequence
from ds_triton.generation.special_tokens import text_decoder
from ds_triton.generation.stopping import StopStringMatcher
from tests.repository.tiny_checkpoints import byte_level_bpe_tokenizer
from tests.unit.generation_support import RecordingSink

CHECKPOINT = Path(__file__).resolve().parents[2] / "model_repository/text_generation/1/checkpoint"
PROMPT = "Tokens:"
TEXT = " Ünïcödé 🙂 and 中文 stop here, then more"


@pytest.fixture(scope="module")
def bpe() -> Any:
    return byte_level_bpe_tokenizer()


def run(tokenizer: Any, ids: list[int], stream: bool = True, **sampling: Any) -> RecordingSink:
    """Feed ``ids`` to a sequence that asked for log-probabilities; what it sent."""
    params = SamplingParams(max_tokens=len(ids), logprobs=1, **sampling)
    request = GenerationRequest(PROMPT, params, stream, stream, return_logprobs=True,
                                return_cumulative_logprob=True)  # fmt: skip
    sink = RecordingSink()
    prompt = list(tokenizer(PROMPT)["input_ids"])
    sequence = Sequence(request, prompt, sink, tokenizer, tokenizer.eos_token_id, None, TokenTexts(tokenizer))
    for step, token in enumerate(ids):
        if sequence.finished:
            break
        sequence.accept(token, TokenLogprobs(token, -0.5 - step, 1, ((token, -0.5 - step),)))
    return sink


def spelled(output: GenerationOutput) -> str:
    assert output.logprobs is not None
    return "".join(entry.text for entry in output.logprobs)


def test_the_entries_of_each_response_spell_its_text_across_split_characters(bpe: Any) -> None:
    ids = list(bpe(TEXT, add_special_tokens=False)["input_ids"])
    sink = run(bpe, ids)
    assert sink.text == TEXT
    assert any(o.text == "" for o in sink.outputs)  # a byte that does not complete a character
    for output in sink.outputs:
        assert spelled(output) == output.text and len(output.logprobs or ()) == output.num_output_tokens
    assert sink.outputs[-1].cumulative_logprob == pytest.approx(sum(-0.5 - i for i in range(len(ids))))
    (whole,) = run(bpe, ids, stream=False).outputs
    assert whole.text == PROMPT + spelled(whole) == PROMPT + TEXT


@pytest.mark.parametrize("include", [False, True])
def test_stop_strings_and_stop_tokens_keep_entries_and_text_together(bpe: Any, include: bool) -> None:
    ids = list(bpe(TEXT, add_special_tokens=False)["input_ids"])
    sink = run(bpe, ids, stop=["stop here"], include_stop_str_in_output=include)
    assert sink.text == (" Ünïcödé 🙂 and 中文 stop here" if include else " Ünïcödé 🙂 and 中文 ")
    assert all(spelled(o) == o.text for o in sink.outputs)
    assert sink.outputs[-1].finish_reason is FinishReason.STOP
    stop_token = ids[3]
    sink = run(bpe, ids, stop_token_ids=(stop_token,), include_stop_str_in_output=include)
    assert sink.text == bpe.decode(ids[: 4 if include else 3])
    assert sum(o.num_output_tokens for o in sink.outputs) == 4
    assert all(spelled(o) == o.text for o in sink.outputs)


def test_merged_responses_carry_the_entries_of_their_tokens() -> None:
    def entry(text: str) -> LogprobEntry:
        return LogprobEntry(1, -1.0, 1, text)

    first = GenerationOutput("a", 2, 1, None, (entry("a"),), -1.0, (None, entry("p")))
    second = GenerationOutput("b", 2, 1, None, (entry("b"),), -2.0)
    last = GenerationOutput("c", 2, 1, FinishReason.LENGTH, (entry("c"),), -3.0)
    merged = merge_outputs([first, second, last])
    assert merged.text == "abc" and [e.text for e in merged.logprobs or ()] == ["a", "b", "c"]
    assert merged.cumulative_logprob == -3.0 and merged.prompt_logprobs == first.prompt_logprobs


def test_special_tokens_in_the_text() -> None:
    from transformers import AutoTokenizer

    if not (CHECKPOINT / "tokenizer.json").is_file():
        pytest.skip("run `make setup` to create the tiny checkpoint")
    tokenizer = AutoTokenizer.from_pretrained(CHECKPOINT)
    ids = [tokenizer.bos_token_id, *tokenizer("hello world", add_special_tokens=False)["input_ids"],
           tokenizer.eos_token_id, tokenizer.eos_token_id]  # fmt: skip
    assert text_decoder(tokenizer)(ids) == "hello world"
    assert text_decoder(tokenizer, False)(ids) == tokenizer.decode(ids, skip_special_tokens=False)
    assert text_decoder(tokenizer, False)(ids) == "[CLS] hello world [SEP] [SEP]"
    assert text_decoder(tokenizer, False, False)(ids) == "[CLS]hello world[SEP][SEP]"
    assert text_decoder(tokenizer, True, False)(ids) == "hello world"  # nothing kept to space


def test_an_included_stop_string_is_found_across_deltas() -> None:
    matcher = StopStringMatcher(["ab", "xyz"], include_stop=True)
    assert matcher.feed("hello a").text == "hello a"  # nothing is held back
    result = matcher.feed("bc")
    assert (result.text, result.stopped) == ("b", True)
    plain = StopStringMatcher(["ab"])
    assert plain.feed("hello a").text == "hello " and plain.feed("bc").text == ""
