"""The batched logits processors and warpers against Hugging Face's own LogitsProcessors.

Each key is checked on a batch where every row has different settings, so the
test proves both HF equality and that a row gets exactly what it would alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import (
    MinNewTokensLengthLogitsProcessor,
    MinPLogitsWarper,
    NoBadWordsLogitsProcessor,
    PrefixConstrainedLogitsProcessor,
    RepetitionPenaltyLogitsProcessor,
    SequenceBiasLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from ds_triton.errors import InvalidInputError
from ds_triton.generation.logits_processors import (
    PenaltyCounters,
    RowPlan,
    apply_logits_processors,
    bad_word_token_ids,
    plan_row,
)
from ds_triton.generation.params import SamplingParams
from ds_triton.generation.sampling import Sampler, _sample_rows

CHECKPOINT = Path(__file__).resolve().parents[2] / "model_repository/text_generation/1/checkpoint"
VOCAB = 64
EOS = 2


class WordTokenizer:
    """One token per character: 'a' is 10, 'b' 11, ...; enough for bad_words."""

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict[str, list[int]]:
        return {"input_ids": [10 + ord(c) - ord("a") for c in text if c != " "]}


def seeded(seed: int) -> torch.Generator:
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


def random_logits(rows: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(rows, VOCAB, generator=seeded(seed)) * 3


def plan(params: SamplingParams, prompt: Sequence[int] = (5, 6, 7)) -> RowPlan:
    return plan_row(params, prompt, WordTokenizer(), VOCAB, EOS)


def with_history(plans: Sequence[RowPlan], history: Sequence[Sequence[int]]) -> PenaltyCounters:
    """Feed each row's generated tokens through the counters and plans, as the sampler does."""
    counters = PenaltyCounters(len(plans), VOCAB)
    apply_logits_processors(torch.zeros(len(plans), VOCAB), plans, counters)  # takes slots
    for step in range(max(len(h) for h in history)):
        live = [i for i, h in enumerate(history) if step < len(h)]
        counted = [i for i in live if plans[i].slot is not None]
        tokens = torch.tensor([history[i][step] for i in counted], dtype=torch.long)
        counters.record([plans[i] for i in counted], tokens)
        for i in live:
            plans[i].observe(history[i][step])
    return counters


def hf(processor: Any, input_ids: Sequence[int], logits: torch.Tensor) -> torch.Tensor:
    return processor(torch.tensor([list(input_ids)]), logits.unsqueeze(0).clone())[0]


PROMPT = (5, 6, 7, 5)
HISTORY = ((8, 9, 8, 5), (3,), (), (9, 9, 9, 9, 1))


def test_repetition_penalty_matches_hf_per_row() -> None:
    penalties = [1.3, 0.7, 2.0, 1.0]
    plans = [plan(SamplingParams(repetition_penalty=p), PROMPT) for p in penalties]
    counters = with_history(plans, HISTORY)
    logits = random_logits(4)
    ours = apply_logits_processors(logits, plans, counters)
    for row, penalty in enumerate(penalties):
        expected = hf(RepetitionPenaltyLogitsProcessor(penalty), PROMPT + HISTORY[row], logits[row])
        torch.testing.assert_close(ours[row], expected, rtol=0, atol=0)


def test_frequency_and_presence_penalties_follow_openai_over_the_output_only() -> None:
    settings = [(0.5, 0.0), (0.0, 1.5), (-1.0, 2.0), (0.0, 0.0)]
    plans = [
        plan(SamplingParams(frequency_penalty=f, presence_penalty=p), PROMPT) for f, p in settings
    ]
    counters = with_history(plans, HISTORY)
    logits = random_logits(4, seed=1)
    ours = apply_logits_processors(logits, plans, counters)
    for row, (frequency, presence) in enumerate(settings):
        counts = torch.bincount(torch.tensor(HISTORY[row], dtype=torch.long), minlength=VOCAB).float()
        expected = logits[row] - frequency * counts - presence * (counts > 0).float()
        torch.testing.assert_close(ours[row], expected)
    assert ours[0, 5] == logits[0, 5] - 0.5  # prompt tokens count only if generated


def test_logit_bias_matches_hf_sequence_bias() -> None:
    biases = [{3: 5.0, 7: -100.0}, {}, {60: 2.5}]
    plans = [plan(SamplingParams(logit_bias=b)) for b in biases]
    logits = random_logits(3, seed=2)
    ours = apply_logits_processors(logits, plans, PenaltyCounters(3, VOCAB))
    for row, bias in enumerate(biases):
        expected = logits[row]
        if bias:
            sequence_bias = {(token,): value for token, value in bias.items()}
            expected = hf(SequenceBiasLogitsProcessor(sequence_bias), PROMPT, logits[row])
        torch.testing.assert_close(ours[row], expected, rtol=0, atol=0)


def test_allowed_token_ids_match_hf_prefix_constraint() -> None:
    allowed = [(4, 9, 33), None, (0,)]
    plans = [plan(SamplingParams(allowed_token_ids=a)) for a in allowed]
    logits = random_logits(3, seed=3)
    ours = apply_logits_processors(logits, plans, PenaltyCounters(3, VOCAB))
    for row, tokens in enumerate(allowed):
        expected = logits[row]
        if tokens is not None:
            processor = PrefixConstrainedLogitsProcessor(lambda batch, ids, t=tokens: list(t), 1)
            expected = hf(processor, PROMPT, logits[row])
        torch.testing.assert_close(ours[row], expected, rtol=0, atol=0)


def test_bad_words_match_hf_over_the_generated_tokens() -> None:
    # "c" is one token (12): always banned. "ab" (10, 11): 11 is banned right after 10.
    words = [("c",), ("ab",), ("ab", "c"), ()]
    history = ((1, 10), (1, 10), (4,), (10,))
    plans = [plan(SamplingParams(bad_words=w)) for w in words]
    with_history(plans, history)
    logits = random_logits(4, seed=4)
    ours = apply_logits_processors(logits, plans, PenaltyCounters(4, VOCAB))
    for row, bad in enumerate(words):
        expected = logits[row]
        if bad:
            ids = bad_word_token_ids(bad, WordTokenizer())
            expected = hf(NoBadWordsLogitsProcessor(ids, eos_token_id=EOS), history[row], logits[row])
        torch.testing.assert_close(ours[row], expected, rtol=0, atol=0)
    assert ours[1, 11] == float("-inf") and ours[2, 11] != float("-inf")


def test_min_tokens_block_eos_and_stop_token_ids_like_hf() -> None:
    settings = [
        SamplingParams(min_tokens=3, stop_token_ids=(9, 40)),
        SamplingParams(min_tokens=3, stop_token_ids=(9,)),
        SamplingParams(min_tokens=3, ignore_eos=True, stop_token_ids=(9,)),
    ]
    plans = [plan(p) for p in settings]
    with_history(plans, ((1, 1), (1, 1, 1), (4,)))
    logits = random_logits(3, seed=5)
    ours = apply_logits_processors(logits, plans, PenaltyCounters(3, VOCAB))
    first = MinNewTokensLengthLogitsProcessor(len(PROMPT), 3, eos_token_id=[EOS, 9, 40])
    torch.testing.assert_close(ours[0], hf(first, (*PROMPT, 1, 1), logits[0]), rtol=0, atol=0)
    torch.testing.assert_close(ours[1], logits[1])  # three tokens generated: nothing blocked
    assert ours[2, 9] == float("-inf") and ours[2, EOS] == logits[2, EOS]  # EOS ignored, not blocked


def test_rows_without_settings_are_not_copied() -> None:
    logits = random_logits(2)
    plans = [plan(SamplingParams()), plan(SamplingParams(temperature=0.5, top_k=3))]
    assert apply_logits_processors(logits, plans, PenaltyCounters(2, VOCAB)) is logits


def hf_warped(logits: torch.Tensor, processors: Sequence[Any]) -> torch.Tensor:
    scores = logits.unsqueeze(0).clone()
    for processor in processors:
        scores = processor(torch.tensor([[1]]), scores)
    return scores[0]


@pytest.mark.parametrize(
    ("params", "processors"),
    [
        (SamplingParams(temperature=0.7, min_p=0.05), [TemperatureLogitsWarper(0.7), MinPLogitsWarper(0.05)]),
        (SamplingParams(temperature=1.3, top_k=5), [TemperatureLogitsWarper(1.3), TopKLogitsWarper(5)]),
        (SamplingParams(temperature=0.9, top_p=0.8), [TemperatureLogitsWarper(0.9), TopPLogitsWarper(0.8)]),
        (
            SamplingParams(temperature=0.5, top_k=10, min_p=0.1),
            [TemperatureLogitsWarper(0.5), TopKLogitsWarper(10), MinPLogitsWarper(0.1)],
        ),
    ],
)
def test_warped_distribution_matches_hf_warpers(params: SamplingParams, processors: list[Any]) -> None:
    logits = random_logits(3, seed=6)
    others = [SamplingParams(temperature=1.0), SamplingParams(temperature=2.0, top_p=0.5)]
    batch = [others[0], params, others[1]]
    _, warped = _sample_rows(logits, batch, [None] * 3, keep_distribution=True)
    assert warped is not None
    expected = hf_warped(logits[1], processors)
    assert torch.equal(torch.isinf(warped[1]), torch.isinf(expected))
    torch.testing.assert_close(
        torch.log_softmax(warped[1], -1), torch.log_softmax(expected, -1), atol=1e-5, rtol=0
    )


def test_min_p_one_keeps_only_the_most_likely_token() -> None:
    logits = random_logits(4, seed=7)
    for _ in range(10):
        tokens, _ = _sample_rows(logits, [SamplingParams(temperature=1.0, min_p=1.0)] * 4, [None] * 4)
        assert tokens.tolist() == logits.argmax(-1).tolist()


def test_a_mixed_batch_gives_every_row_what_it_gets_alone() -> None:
    settings = [
        SamplingParams(temperature=0, repetition_penalty=1.5, logprobs=3),
        SamplingParams(temperature=0, logit_bias={4: 3.0}, frequency_penalty=0.4),
        SamplingParams(temperature=0.8, seed=11, min_p=0.02, presence_penalty=0.3, logprobs=0),
        SamplingParams(temperature=0, bad_words=("ab",), allowed_token_ids=tuple(range(8, 20))),
        SamplingParams(temperature=0),
    ]
    steps = [random_logits(len(settings), seed=10 + s) for s in range(6)]

    def run(rows: Sequence[int]) -> list[list[tuple[int, Any]]]:
        sampler = Sampler(VOCAB, max_rows=len(rows), logprobs_mode="processed_logprobs")
        plans = [plan(settings[r], PROMPT) for r in rows]
        generators = [seeded(p.seed) if p.seed is not None else None for p in (settings[r] for r in rows)]
        out: list[list[tuple[int, Any]]] = [[] for _ in rows]
        for logits in steps:
            step = sampler.sample(logits[list(rows)], [settings[r] for r in rows], generators, plans)
            tokens, logprobs = step.tokens.tolist(), step.host_logprobs()
            for j, plan_ in enumerate(plans):
                plan_.observe(tokens[j])
                out[j].append((tokens[j], logprobs[j]))
        return out

    batched = run(range(len(settings)))
    for row in range(len(settings)):
        assert run([row])[0] == batched[row], row


def test_token_ids_outside_the_vocabulary_are_refused_by_name() -> None:
    for params, name in (
        (SamplingParams(stop_token_ids=(VOCAB,)), "stop_token_ids"),
        (SamplingParams(allowed_token_ids=(1, 99)), "allowed_token_ids"),
        (SamplingParams(logit_bias={70: 1.0}), "logit_bias"),
    ):
        with pytest.raises(InvalidInputError, match=f"sampling_parameters.{name} .*outside"):
            plan(params)


def test_bad_words_are_tokenized_with_and_without_a_leading_space() -> None:
    from transformers import AutoTokenizer

    if not (CHECKPOINT / "tokenizer.json").is_file():
        pytest.skip("run `make setup` to create the tiny checkpoint")
    tokenizer = AutoTokenizer.from_pretrained(CHECKPOINT)
    ids = bad_word_token_ids(["hello", " unbelievable"], tokenizer)
    assert ids[0] == tokenizer("hello", add_special_tokens=False)["input_ids"]
    assert ids[-1] == tokenizer("unbelievable", add_special_tokens=False)["input_ids"]
    with pytest.raises(InvalidInputError, match="bad_words"):
        bad_word_token_ids(["   "], tokenizer)
