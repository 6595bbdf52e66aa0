"""The batched sampler: greedy, temperature, top-k, top-p, seeds, blocked EOS."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ds_triton.generation.logits_processors import RowPlan
from ds_triton.generation.params import SamplingParams
from ds_triton.generation.sampling import Sampler


def sample_next_tokens(
    logits: torch.Tensor,
    params: Sequence[SamplingParams],
    generators: Sequence[torch.Generator | None],
    plans: Sequence[RowPlan] | None = None,
) -> torch.Tensor:
    plans = plans or [RowPlan() for _ in params]
    return Sampler(logits.shape[1], len(params)).sample(logits, params, generators, plans).tokens

GREEDY = SamplingParams(temperature=0.0)


def seeded(seed: int) -> torch.Generator:
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


def test_greedy_rows_take_the_argmax() -> None:
    logits = torch.randn(4, 50, generator=seeded(0))
    tokens = sample_next_tokens(logits, [GREEDY] * 4, [None] * 4)
    assert tokens.tolist() == logits.argmax(-1).tolist()


def test_top_k_one_and_tiny_top_p_are_greedy() -> None:
    logits = torch.randn(3, 200, generator=seeded(1))
    params = [
        SamplingParams(temperature=2.0, top_k=1),
        SamplingParams(temperature=2.0, top_p=1e-6),
        SamplingParams(temperature=2.0, top_k=1, top_p=0.5),
    ]
    for _ in range(20):
        tokens = sample_next_tokens(logits, params, [None] * 3)
        assert tokens.tolist() == logits.argmax(-1).tolist()


def test_top_k_keeps_only_the_k_best() -> None:
    logits = torch.arange(100, dtype=torch.float32).repeat(2, 1)
    params = [SamplingParams(temperature=50.0, top_k=3), SamplingParams(temperature=50.0, top_k=10)]
    seen: list[set[int]] = [set(), set()]
    for _ in range(200):
        a, b = sample_next_tokens(logits, params, [None, None]).tolist()
        seen[0].add(a)
        seen[1].add(b)
    assert seen[0] == {97, 98, 99}
    assert seen[1] <= set(range(90, 100)) and len(seen[1]) > 3


def test_frequencies_follow_the_distribution() -> None:
    probs = torch.tensor([0.5, 0.3, 0.2, 0.0])
    logits = probs.clamp(min=1e-12).log().repeat(4000, 1)
    params = [SamplingParams(temperature=1.0)] * 4000
    torch.manual_seed(2)
    tokens = sample_next_tokens(logits, params, [None] * 4000)
    counts = torch.bincount(tokens, minlength=4).float() / 4000
    assert torch.allclose(counts, probs, atol=0.03), counts
    # top_p 0.7 keeps tokens 0 and 1 only (0.5 before token 2 is < 0.7, 0.8 before token 2 is not).
    nucleus = sample_next_tokens(
        logits, [SamplingParams(temperature=1.0, top_p=0.7)] * 4000, [None] * 4000
    )
    assert set(nucleus.tolist()) == {0, 1}


def test_seeded_rows_ignore_their_batch() -> None:
    logits = torch.randn(3, 300, generator=seeded(3))
    params = SamplingParams(temperature=1.0, top_p=0.9, seed=5)
    alone = sample_next_tokens(logits[1:2], [params], [seeded(5)])
    batched = sample_next_tokens(logits, [GREEDY, params, SamplingParams()], [None, seeded(5), None])
    assert batched[1] == alone[0]


def test_blocked_token_is_never_chosen() -> None:
    logits = torch.zeros(2, 10)
    logits[:, 7] = 100.0
    plans = [RowPlan(stop_ids=(7,), min_tokens=1), RowPlan(stop_ids=(7,), min_tokens=1, generated=1)]
    tokens = sample_next_tokens(logits, [GREEDY, GREEDY], [None, None], plans)
    assert tokens[0] != 7 and tokens[1] == 7
