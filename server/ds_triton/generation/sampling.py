"""Pick each sequence's next token from the logits of one batched forward pass.

Vectorised over the batch, in vLLM's order: the logits processors that can change
the winner (``logits_processors``: allowed tokens, bad words, min_tokens, bias,
penalties) on the rows that use them; then greedy rows take the argmax and sampled
rows go through temperature, min-p, top-k and top-p before one draw each. Rows
that asked for log-probabilities get them from the same tensors, with one
device-to-host copy per step for the whole batch. Only rows with their own
``seed`` draw their noise one at a time (each from its own generator), so the
cost does not grow with Python work per sequence.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ds_triton.generation.logits_processors import (
    PenaltyCounters,
    RowPlan,
    apply_logits_processors,
)
from ds_triton.generation.logprobs import DeviceLogprobs, TokenLogprobs
from ds_triton.generation.params import SamplingParams
from ds_triton.spec import LogprobsMode


@dataclass(frozen=True)
class SampledTokens:
    """One step's choice for every row, still on the device.

    Attributes:
        tokens: (B,) token ids (the next decode step's input).
        rows: The rows whose plans asked for log-probabilities, in order.
        logprobs: Their log-probabilities (None when no row asked).
    """

    tokens: torch.Tensor
    rows: tuple[int, ...] = ()
    logprobs: DeviceLogprobs | None = None

    def host_logprobs(self) -> list[TokenLogprobs | None]:
        """Per row, its log-probabilities, or None when it did not ask (a device-to-host copy)."""
        result: list[TokenLogprobs | None] = [None] * len(self.tokens)
        if self.logprobs is not None:
            for row, value in zip(self.rows, self.logprobs.to_host(), strict=True):
                result[row] = value
        return result


class Sampler:
    """Samples a batch whose rows each have their own settings; owns the penalty counters.

    Per row it needs the row's ``SamplingParams``, its generator (seeded rows) and its
    ``RowPlan``; whoever delivers a row's token to its sequence also calls
    ``plan.observe(token)``.
    """

    def __init__(
        self, vocab_size: int, max_rows: int, logprobs_mode: LogprobsMode = "raw_logprobs"
    ) -> None:
        self.logprobs_mode = logprobs_mode
        self._penalties = PenaltyCounters(max_rows, vocab_size)

    def release(self, plan: RowPlan) -> None:
        """The sequence of ``plan`` left the batch: its penalty slot is free again."""
        self._penalties.release(plan)

    def sample(
        self,
        logits: torch.Tensor,
        params: Sequence[SamplingParams],
        generators: Sequence[torch.Generator | None],
        plans: Sequence[RowPlan],
    ) -> SampledTokens:
        """The next token of each row of ``logits`` (B, V) and the log-probabilities asked for."""
        logits = logits.float()
        wanted = [i for i, plan in enumerate(plans) if plan.logprobs_needed]
        # Processors work on a copy, so ``logits`` stays the model's own (raw) distribution.
        processed = apply_logits_processors(logits, plans, self._penalties)
        tokens = processed.argmax(dim=-1)
        warped: dict[int, torch.Tensor] = {}
        sampled = [i for i, p in enumerate(params) if not p.greedy]
        if sampled:
            rows = _index(sampled, processed)
            keep = self.logprobs_mode == "processed_logprobs" and not set(sampled).isdisjoint(wanted)
            chosen, distributions = _sample_rows(
                processed.index_select(0, rows),
                [params[i] for i in sampled],
                [generators[i] for i in sampled],
                keep_distribution=keep,
            )
            tokens[rows] = chosen
            if distributions is not None:
                warped = {row: distributions[j] for j, row in enumerate(sampled)}
        counted = [i for i, plan in enumerate(plans) if plan.slot is not None]
        if counted:
            self._penalties.record(
                [plans[i] for i in counted], tokens.index_select(0, _index(counted, tokens))
            )
        if not wanted:
            return SampledTokens(tokens)
        every = len(wanted) == len(plans)
        if self.logprobs_mode == "raw_logprobs":
            scores = logits if every else logits.index_select(0, _index(wanted, logits))
        elif warped:  # processed: the distribution each token was drawn from
            scores = torch.stack([warped.get(i, processed[i]) for i in wanted])
        else:
            scores = processed if every else processed.index_select(0, _index(wanted, processed))
        chosen_tokens = tokens if every else tokens.index_select(0, _index(wanted, tokens))
        counts = [plans[i].top_logprobs for i in wanted]
        return SampledTokens(tokens, tuple(wanted), DeviceLogprobs(scores, chosen_tokens, counts))


def _index(rows: Sequence[int], like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(list(rows), dtype=torch.long, device=like.device)


def _sample_rows(
    logits: torch.Tensor,
    params: Sequence[SamplingParams],
    generators: Sequence[torch.Generator | None],
    keep_distribution: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One draw per row after temperature, min-p, top-k and top-p.

    Returns the chosen tokens and, with ``keep_distribution``, the (N, V) logits they
    were drawn from (-inf where a token was cut).
    """
    device = logits.device
    vocab = logits.shape[-1]
    temperature = torch.tensor([p.temperature for p in params], device=device).unsqueeze(1)
    scaled = logits / temperature
    if any(p.min_p > 0 for p in params):
        # p_i < min_p * p_max  <=>  logit_i < logit_max + log(min_p); log(0) = -inf keeps all.
        floor = torch.tensor([math.log(p.min_p) if p.min_p > 0 else -math.inf for p in params], device=device)
        threshold = scaled.max(dim=-1, keepdim=True).values + floor.unsqueeze(1)
        scaled = scaled.masked_fill(scaled < threshold, float("-inf"))
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
        cut = (torch.cumsum(probs, dim=-1) - probs) >= top_p
        probs = probs.masked_fill(cut, 0.0)
        scaled = scaled.masked_fill(cut, float("-inf"))
    picks = _exponential_race(probs, generators)
    warped: torch.Tensor | None = None
    if keep_distribution:
        warped = scaled
        if candidate_ids is not None:
            warped = torch.full_like(logits, float("-inf")).scatter(1, candidate_ids, scaled)
    if candidate_ids is not None:
        picks = candidate_ids.gather(1, picks.unsqueeze(1)).squeeze(1)
    return picks, warped


def _exponential_race(
    probs: torch.Tensor, generators: Sequence[torch.Generator | None]
) -> torch.Tensor:
    """One draw per row from (unnormalised) ``probs``: argmax of p / Exp(1) noise.

    Equivalent to multinomial sampling, vectorised, and with each seeded row's
    noise drawn from its own generator so its tokens do not depend on its batch.
    Rows without a seed share torch's default generator.
    """
    noise = torch.empty_like(probs)
    if all(g is None for g in generators):
        noise.exponential_()
    else:
        for i, generator in enumerate(generators):
            if generator is None:
                noise[i].exponential_()
            else:
                # A sequence's generator lives on the CPU; its draw is one small copy.
                row = torch.empty(probs.shape[-1], dtype=probs.dtype, device=generator.device)
                noise[i] = row.exponential_(generator=generator).to(probs.device)
    return (probs / noise.clamp_(min=1e-20)).argmax(dim=-1)
