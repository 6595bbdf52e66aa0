"""Log-probabilities: values, ranks, top lists and the vLLM backend's JSON format."""

from __future__ import annotations

import json

import torch

from ds_triton.generation.logits_processors import plan_row
from ds_triton.generation.logprobs import (
    LogprobEntry,
    TokenLogprobs,
    TokenTexts,
    gather_logprobs,
    logprobs_json,
    prompt_logprobs,
)
from ds_triton.generation.params import SamplingParams
from ds_triton.generation.sampling import Sampler

VOCAB = 50


def seeded(seed: int) -> torch.Generator:
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


def test_chosen_token_rank_and_top_list_come_from_log_softmax() -> None:
    logits = torch.randn(3, VOCAB, generator=seeded(0))
    logprobs = torch.log_softmax(logits, -1)
    chosen = torch.tensor([int(logits[0].argmax()), 7, 3])
    rows = gather_logprobs(logprobs, chosen, [2, 0, 5])
    for row, (value, count) in enumerate(zip(rows, [2, 0, 5], strict=True)):
        token = int(chosen[row])
        assert value.token_id == token
        assert abs(value.logprob - float(logprobs[row, token])) < 1e-6
        assert value.rank == int((logprobs[row] >= logprobs[row, token]).sum())
        order = logprobs[row].argsort(descending=True)[:count].tolist()
        assert [t for t, _ in value.top] == order
        assert all(abs(lp - float(logprobs[row, t])) < 1e-6 for t, lp in value.top)
    assert rows[0].rank == 1


def test_ranks_count_ties_inside_at_the_edge_of_and_beyond_the_listed_tokens() -> None:
    scores = torch.tensor([[3.0, 3.0, 1.0, 1.0, 1.0, 0.0]] * 4)
    chosen = torch.tensor([1, 2, 5, 0])
    # Rows list 1, 3, 2 and 0 top tokens: ties of the chosen score count wherever they are.
    rows = gather_logprobs(scores, chosen, [1, 3, 2, 0])
    assert [r.rank for r in rows] == [2, 5, 6, 2]
    expected = torch.log_softmax(scores[0], -1)
    assert all(abs(r.logprob - float(expected[r.token_id])) < 1e-6 for r in rows)


def test_json_has_the_chosen_token_first_then_the_top_ranks_once_each() -> None:
    entry = LogprobEntry(7, -2.5, 3, "x", top=((4, -0.1, "a"), (9, -1.0, "b"), (7, -2.5, "x")))
    (position,) = json.loads(logprobs_json([entry]))
    assert list(position) == ["7", "4", "9"]
    assert position["7"] == {"logprob": -2.5, "rank": 3, "decoded_token": "x"}
    assert position["4"] == {"logprob": -0.1, "rank": 1, "decoded_token": "a"}
    assert logprobs_json(None) == "null"
    assert json.loads(logprobs_json([None, entry]))[0] is None


def test_prompt_logprobs_score_each_prompt_token_given_the_ones_before() -> None:
    logits = torch.randn(4, VOCAB, generator=seeded(1))
    prompt = [5, 9, 1, 30]
    values = prompt_logprobs(logits, prompt, 2)
    expected = torch.log_softmax(logits, -1)
    assert [v.token_id for v in values] == prompt[1:]
    for position, value in enumerate(values):
        assert abs(value.logprob - float(expected[position, prompt[position + 1]])) < 1e-6
        assert len(value.top) == 2


def test_token_texts_decode_each_token_alone_once() -> None:
    calls: list[list[int]] = []

    class Tokenizer:
        def decode(self, ids: list[int]) -> str:
            calls.append(ids)
            return f"<{ids[0]}>"

    texts = TokenTexts(Tokenizer())
    entry = texts.entry(TokenLogprobs(3, -1.0, 2, ((8, -0.5), (3, -1.0))), "chosen text")
    assert entry.text == "chosen text" and entry.top == ((8, -0.5, "<8>"), (3, -1.0, "<3>"))
    texts.entry(TokenLogprobs(8, -0.5, 1, ((8, -0.5),)), "")
    assert calls == [[8], [3]]


def test_sampler_raw_mode_reports_the_model_distribution_despite_processing() -> None:
    logits = torch.randn(2, VOCAB, generator=seeded(2)) * 3
    params = [
        SamplingParams(temperature=0, logprobs=3, repetition_penalty=2.0, logit_bias={1: 5.0}),
        SamplingParams(temperature=0.7, top_k=4, logprobs=1, seed=3),
    ]
    plans = [plan_row(p, [1, 2], None, VOCAB, None) for p in params]
    step = Sampler(VOCAB, 2, "raw_logprobs").sample(
        logits, params, [None, seeded(3)], plans
    )
    expected = torch.log_softmax(logits, -1)
    for row, value in enumerate(step.host_logprobs()):
        assert value is not None and value.token_id == int(step.tokens[row])
        assert abs(value.logprob - float(expected[row, value.token_id])) < 1e-5
        assert [t for t, _ in value.top] == expected[row].argsort(descending=True)[: len(value.top)].tolist()


def test_sampler_processed_mode_reports_the_distribution_the_token_came_from() -> None:
    logits = torch.randn(2, VOCAB, generator=seeded(4)) * 3
    params = [
        SamplingParams(temperature=0, logprobs=2, logit_bias={1: 50.0}),
        SamplingParams(temperature=0.5, top_k=3, logprobs=5, seed=1),
    ]
    plans = [plan_row(p, [1, 2], None, VOCAB, None) for p in params]
    step = Sampler(VOCAB, 2, "processed_logprobs").sample(logits, params, [None, seeded(1)], plans)
    greedy, sampled = step.host_logprobs()
    assert greedy is not None and sampled is not None
    biased = logits[0].clone()
    biased[1] += 50.0
    assert greedy.token_id == 1 and abs(greedy.logprob - float(torch.log_softmax(biased, -1)[1])) < 1e-5
    warped = logits[1] / 0.5
    kept = warped.topk(3).indices
    expected = torch.full_like(warped, float("-inf"))
    expected[kept] = torch.log_softmax(warped[kept], -1)
    assert sampled.token_id in kept.tolist()
    assert abs(sampled.logprob - float(expected[sampled.token_id])) < 1e-5
    assert [lp for _, lp in sampled.top][3:] == [float("-inf")] * 2


def test_no_row_asking_means_no_logprobs_work() -> None:
    logits = torch.randn(2, VOCAB, generator=seeded(5))
    params = [SamplingParams(temperature=0)] * 2
    plans = [plan_row(p, [1], None, VOCAB, None) for p in params]
    step = Sampler(VOCAB, 2).sample(logits, params, [None, None], plans)
    assert step.host_logprobs() == [None, None]
    cumulative = [plan_row(p, [1], None, VOCAB, None, cumulative_logprob=True) for p in params]
    step = Sampler(VOCAB, 2).sample(logits, params, [None, None], cumulative)
    assert all(v is not None and v.top == () for v in step.host_logprobs())
