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
    temperature = torch.tensor([p.temperature for p in params], device=device).unsqueeze(1)
    sorted_logits, sorted_ids = torch.sort(logits / temperature, dim=-1, descending=True)
    vocab = logits.shape[-1]
    ranks = torch.arange(vocab, device=device).unsqueeze(0)
    top_k = torch.tensor([p.top_k if p.top_k > 0 else vocab for p in params], device=device)
    sorted_logits = sorted_logits.masked_fill(ranks >= top_k.unsqueeze(1), float("-inf"))
    probs = torch.softmax(sorted_logits, dim=-1)
    top_p = torch.tensor([p.top_p for p in params], device=device).unsqueeze(1)
    # Drop a token when the mass before it already reaches top_p; the first always stays.
    before = torch.cumsum(probs, dim=-1) - probs
    probs = probs.masked_fill(before >= top_p, 0.0)
    probs = probs / probs.sum(dim=-1, keepdim=True)
    picks = torch.empty(len(params), dtype=torch.long, device=device)
    shared = [i for i, g in enumerate(generators) if g is None]
    if shared:
        index = torch.tensor(shared, dtype=torch.long, device=device)
        picks[index] = torch.multinomial(
            probs.index_select(0, index), 1, generator=shared_generator
        ).squeeze(1)
    for i, generator in enumerate(generators):
        if generator is not None:
            # A sequence's generator lives on the CPU; its draw is one small copy.
            row = probs[i].to(generator.device)
            picks[i] = torch.multinomial(row, 1, generator=generator).squeeze(0).to(device)
    return sorted_ids.gather(1, picks.unsqueeze(1)).squeeze(1)
