"""Pick each sequence's next token from the logits of one batched forward pass.

Vectorised over the batch: greedy rows take the argmax, sampled rows go through
temperature, top-k and top-p on one sorted copy of their logits. Only rows with
their own ``seed`` draw one at a time (each from its own generator), so the cost
does not grow with Python work per sequence.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ds_triton.generation.params import SamplingParams


def sample_next_tokens(
    logits: torch.Tensor,
    params: Sequence[SamplingParams],
    generators: Sequence[torch.Generator | None],
    blocked_token: int | None = None,
    blocked_rows: torch.Tensor | None = None,
    shared_generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Next token id per row of ``logits`` (B, V).

    Args:
        logits: Last-position logits, one row per sequence.
        params: Each row's sampling parameters.
        generators: Each row's own generator (rows with a seed) or None.
        blocked_token: A token that ``blocked_rows`` may not produce (EOS before min_tokens).
        blocked_rows: Bool (B,) mask of rows for which ``blocked_token`` is masked out.
        shared_generator: Generator of the rows without a seed.
    """
    logits = logits.float()
    if blocked_token is not None and blocked_rows is not None and bool(blocked_rows.any()):
        logits = logits.clone()
        logits[blocked_rows, blocked_token] = float("-inf")
    tokens = logits.argmax(dim=-1)
    sampled_rows = [i for i, p in enumerate(params) if not p.greedy]
    if not sampled_rows:
        return tokens
    rows = torch.tensor(sampled_rows, dtype=torch.long, device=logits.device)
    chosen = _sample_rows(
        logits.index_select(0, rows),
        [params[i] for i in sampled_rows],
        [generators[i] for i in sampled_rows],
        shared_generator,
    )
    tokens[rows] = chosen
    return tokens


def _sample_rows(
    logits: torch.Tensor,
    params: Sequence[SamplingParams],
    generators: Sequence[torch.Generator | None],
    shared_generator: torch.Generator | None,
) -> torch.Tensor:
    device = logits.device
    vocab = logits.shape[-1]
    temperature = torch.tensor([p.temperature for p in params], device=device).unsqueeze(1)
    scaled = logits / temperature
    top_k = [p.top_k if 0 < p.top_k < vocab else vocab for p in params]
    use_top_p = any(p.top_p < 1.0 for p in params)
    candidate_ids: torch.Tensor | None = None
    if use_top_p:
        # Nucleus sampling needs the whole distribution in order.
        scaled, candidate_ids = torch.sort(scaled, dim=-1, descending=True)
    elif max(top_k) < vocab:
        # top-k alone needs only the k best (much cheaper than sorting the vocabulary).
        scaled, candidate_ids = torch.topk(scaled, max(top_k), dim=-1)
    if candidate_ids is not None and min(top_k) < scaled.shape[-1]:
        ranks = torch.arange(scaled.shape[-1], device=device).unsqueeze(0)
        limits = torch.tensor(top_k, device=device).unsqueeze(1)
        scaled = scaled.masked_fill(ranks >= limits, float("-inf"))
    probs = torch.softmax(scaled, dim=-1)
    if use_top_p:
        top_p = torch.tensor([p.top_p for p in params], device=device).unsqueeze(1)
        # Drop a token when the mass before it already reaches top_p; the first always stays.
        before = torch.cumsum(probs, dim=-1) - probs
        probs = probs.masked_fill(before >= top_p, 0.0)
    picks = _exponential_race(probs, generators, shared_generator)
    return picks if candidate_ids is None else candidate_ids.gather(1, picks.unsqueeze(1)).squeeze(1)


def _exponential_race(
    probs: torch.Tensor,
    generators: Sequence[torch.Generator | None],
    shared_generator: torch.Generator | None,
) -> torch.Tensor:
    """One draw per row from (unnormalised) ``probs``: argmax of p / Exp(1) noise.

    Equivalent to multinomial sampling, vectorised, and with each seeded row's
    noise drawn from its own generator so its tokens do not depend on its batch.
    """
    noise = torch.empty_like(probs)
    shared = [i for i, g in enumerate(generators) if g is None]
    if len(shared) == len(generators):
        noise.exponential_(generator=shared_generator)
    else:
        for i in shared:
            noise[i].exponential_(generator=shared_generator)
        for i, generator in enumerate(generators):
            if generator is not None:
                # A sequence's generator lives on the CPU; its draw is one small copy.
                row = torch.empty(probs.shape[-1], dtype=probs.dtype, device=generator.device)
                noise[i] = row.exponential_(generator=generator).to(probs.device)
    return (probs / noise.clamp_(min=1e-20)).argmax(dim=-1)
