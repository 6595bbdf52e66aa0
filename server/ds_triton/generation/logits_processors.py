"""Logits processing that can change which token wins, vectorised over the batch.

Each sequence's settings are compiled once, when it is submitted, into a ``RowPlan``
(bad words tokenized, token ids checked against the vocabulary). Every step then
applies to the rows that use them, in vLLM's order:

1. ``allowed_token_ids``: every other token is masked out;
2. ``bad_words``: a word's last token is masked out when the generated tokens end
   with the rest of it (a one-token word always);
3. ``min_tokens``: the stop tokens (EOS unless ``ignore_eos``, ``stop_token_ids``)
   are masked out until that many tokens were generated;
4. ``logit_bias``: added to the named tokens' logits;
5. ``repetition_penalty`` over prompt and generated tokens (HF's rule: positive
   logits are divided by it, negative ones multiplied), then ``frequency_penalty``
   times each token's count in the output and ``presence_penalty`` once per token
   present in the output (OpenAI's definitions).

Masks and biases of all rows become one index per step. Penalties read per-row
token counts that stay on the logits' device in slots and grow by one scatter per
step, so no step copies a sequence's history to the device.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ds_triton.errors import InvalidInputError
from ds_triton.generation.params import FIELD, SamplingParams


@dataclass
class RowPlan:
    """What one sequence needs from the logits processors, and its running state.

    Attributes:
        allowed: Only these tokens may be generated (None: any).
        banned: Tokens never generated (one-token bad words).
        bad_sequences: Multi-token bad words: (prefix, last token) pairs.
        stop_ids: Tokens masked out before ``min_tokens`` tokens were generated.
        min_tokens: See ``SamplingParams.min_tokens``.
        bias: (token, bias) pairs added to the logits.
        repetition: HF's repetition penalty (1 = off).
        frequency: OpenAI's frequency penalty (0 = off).
        presence: OpenAI's presence penalty (0 = off).
        prompt_ids: The prompt (the repetition penalty covers it).
        top_logprobs: Most likely tokens to list per generated token.
        logprobs_needed: The chosen token's log-probability is needed (``logprobs``
            or the cumulative log-probability was asked for).
        generated: Tokens generated so far.
        history: The last generated tokens (as many as the longest bad-word prefix).
        slot: Row of the penalty counters holding this sequence (None: none yet).
    """

    allowed: tuple[int, ...] | None = None
    banned: tuple[int, ...] = ()
    bad_sequences: tuple[tuple[tuple[int, ...], int], ...] = ()
    stop_ids: tuple[int, ...] = ()
    min_tokens: int = 0
    bias: tuple[tuple[int, float], ...] = ()
    repetition: float = 1.0
    frequency: float = 0.0
    presence: float = 0.0
    prompt_ids: tuple[int, ...] = ()
    top_logprobs: int = 0
    logprobs_needed: bool = False
    generated: int = 0
    history: list[int] = field(default_factory=list)
    slot: int | None = None

    @property
    def penalized(self) -> bool:
        return self.repetition != 1.0 or self.frequency != 0.0 or self.presence != 0.0

    @property
    def active(self) -> bool:
        """Whether this step's logits need any processing for this row."""
        return bool(
            self.allowed is not None
            or self.banned
            or self.bad_sequences
            or self.bias
            or self.penalized
            or (self.stop_ids and self.generated < self.min_tokens)
        )

    @property
    def _history_length(self) -> int:
        return max((len(prefix) for prefix, _ in self.bad_sequences), default=0)

    def observe(self, token: int) -> None:
        """Record the token this row generated."""
        self.generated += 1
        keep = self._history_length
        if keep:
            self.history.append(token)
            del self.history[:-keep]

    def banned_now(self) -> list[int]:
        """Tokens this row may not produce at this step."""
        tokens = list(self.banned)
        for prefix, last in self.bad_sequences:
            if len(self.history) >= len(prefix) and tuple(self.history[-len(prefix) :]) == prefix:
                tokens.append(last)
        if self.generated < self.min_tokens:
            tokens.extend(self.stop_ids)
        return tokens


def plan_row(
    params: SamplingParams,
    prompt_ids: Sequence[int],
    tokenizer: Any,
    vocab_size: int,
    eos_token_id: int | None,
    logprobs: bool = True,
    cumulative_logprob: bool = False,
) -> RowPlan:
    """Compile ``params`` for the sampler, checking token ids against the vocabulary.

    ``logprobs``: the response lists log-probabilities (``return_logprobs``; the
    ``logprobs`` key says how many); ``cumulative_logprob``: it carries their
    running sum, which needs the chosen token's log-probability even without that key.

    Raises:
        InvalidInputError: A token id is outside the vocabulary, or a bad word has no tokens.
    """
    for name, ids in (
        ("stop_token_ids", params.stop_token_ids),
        ("allowed_token_ids", params.allowed_token_ids or ()),
        ("logit_bias", list(params.logit_bias)),
    ):
        outside = sorted({i for i in ids if not 0 <= i < vocab_size})
        if outside:
            raise InvalidInputError(
                f"{FIELD}.{name} has token id(s) outside the vocabulary "
                f"[0, {vocab_size}): {', '.join(map(str, outside[:10]))}"
            )
    banned: list[int] = []
    sequences: list[tuple[tuple[int, ...], int]] = []
    for ids in bad_word_token_ids(params.bad_words, tokenizer):
        if len(ids) == 1:
            banned.append(ids[0])
        else:
            sequences.append((tuple(ids[:-1]), ids[-1]))
    stop_ids = list(params.stop_token_ids)
    if eos_token_id is not None and not params.ignore_eos:
        stop_ids.append(eos_token_id)
    return RowPlan(
        allowed=params.allowed_token_ids,
        banned=tuple(dict.fromkeys(banned)),
        bad_sequences=tuple(dict.fromkeys(sequences)),
        stop_ids=tuple(dict.fromkeys(stop_ids)),
        min_tokens=params.min_tokens,
        bias=tuple(params.logit_bias.items()),
        repetition=params.repetition_penalty,
        frequency=params.frequency_penalty,
        presence=params.presence_penalty,
        prompt_ids=tuple(prompt_ids) if params.penalized else (),
        top_logprobs=params.logprobs or 0,
        logprobs_needed=(logprobs and params.logprobs is not None) or cumulative_logprob,
    )


def bad_word_token_ids(words: Sequence[str], tokenizer: Any) -> list[list[int]]:
    """Token ids of each bad word, as vLLM tokenizes them.

    A word is banned as written (leading spaces stripped) and, where the tokenizer
    spells it differently, with one leading space (how it appears mid-sentence in
    byte-level BPE vocabularies).

    Raises:
        InvalidInputError: A word has no tokens.
    """
    result: list[list[int]] = []
    for word in words:
        plain = _encode(tokenizer, word.lstrip())
        if not plain:
            raise InvalidInputError(f"{FIELD}.bad_words: {word!r} has no tokens")
        result.append(plain)
        spaced = _encode(tokenizer, " " + word.lstrip())
        if spaced and spaced[0] != plain[0] and len(spaced) == len(plain):
            result.append(spaced)
    return result


def _encode(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


class PenaltyCounters:
    """Per-row token counts (output) and prompt membership, kept on the device in slots.

    Allocated on first use: a deployment where no request asks for a penalty pays
    nothing. ``capacity`` rows to start with (the running batch's size); more are
    added if ever needed.
    """

    def __init__(self, capacity: int, vocab_size: int) -> None:
        self._capacity = max(1, capacity)
        self._vocab = vocab_size
        self._counts: torch.Tensor | None = None  # (slots, V) int32: times generated
        self._prompt: torch.Tensor | None = None  # (slots, V) bool: in the prompt
        self._free: list[int] = []

    def release(self, plan: RowPlan) -> None:
        if plan.slot is not None:
            self._free.append(plan.slot)
            plan.slot = None

    def _admit(self, plan: RowPlan, device: torch.device) -> int:
        if self._counts is None or self._prompt is None:
            self._counts = torch.zeros((self._capacity, self._vocab), dtype=torch.int32, device=device)
            self._prompt = torch.zeros((self._capacity, self._vocab), dtype=torch.bool, device=device)
            self._free = list(range(self._capacity - 1, -1, -1))
        if not self._free:
            grown = self._counts.shape[0]
            self._counts = torch.cat([self._counts, torch.zeros_like(self._counts)])
            self._prompt = torch.cat([self._prompt, torch.zeros_like(self._prompt)])
            self._free = list(range(2 * grown - 1, grown - 1, -1))
        slot = self._free.pop()
        self._counts[slot].zero_()
        self._prompt[slot].zero_()
        if plan.prompt_ids:
            ids = torch.tensor(plan.prompt_ids, dtype=torch.long, device=device)
            self._prompt[slot, ids] = True
        plan.slot = slot
        return slot

    def apply(self, logits: torch.Tensor, rows: Sequence[int], plans: Sequence[RowPlan]) -> None:
        """Penalise ``logits`` rows ``rows`` (in place) with their ``plans``."""
        device = logits.device
        slots = [p.slot if p.slot is not None else self._admit(p, device) for p in plans]
        assert self._counts is not None and self._prompt is not None
        index = torch.tensor(slots, dtype=torch.long, device=device)
        row_index = torch.tensor(list(rows), dtype=torch.long, device=device)
        counts = self._counts.index_select(0, index)
        present = counts > 0
        values = logits.index_select(0, row_index)
        settings = torch.tensor(
            [[p.repetition, p.frequency, p.presence] for p in plans], dtype=values.dtype, device=device
        )
        repetition, frequency, presence = settings.unbind(1)
        seen = present | self._prompt.index_select(0, index)
        factor = torch.where(seen, repetition.unsqueeze(1), torch.ones_like(values))
        values = torch.where(values > 0, values / factor, values * factor)
        values = values - frequency.unsqueeze(1) * counts - presence.unsqueeze(1) * present
        logits.index_copy_(0, row_index, values)

    def record(self, plans: Sequence[RowPlan], tokens: torch.Tensor) -> None:
        """Count ``tokens`` (one per plan, on the device) as generated by their rows."""
        slots = [p.slot for p in plans]
        if self._counts is None or not slots or any(s is None for s in slots):
            return
        index = torch.tensor(slots, dtype=torch.long, device=tokens.device)
        ones = torch.ones(len(slots), dtype=self._counts.dtype, device=tokens.device)
        self._counts.index_put_((index, tokens), ones, accumulate=True)


def apply_logits_processors(
    logits: torch.Tensor, plans: Sequence[RowPlan], penalties: PenaltyCounters
) -> torch.Tensor:
    """``logits`` (B, V) after each row's plan; a new tensor, or ``logits`` when nothing applies."""
    active = [i for i, plan in enumerate(plans) if plan.active]
    if not active:
        return logits
    logits = logits.clone()
    device = logits.device
    allowed_rows: list[int] = []
    allowed_cols: list[int] = []
    banned_rows: list[int] = []
    banned_cols: list[int] = []
    bias_rows: list[int] = []
    bias_cols: list[int] = []
    bias_values: list[float] = []
    penalized: list[int] = []
    for row in active:
        plan = plans[row]
        if plan.allowed is not None:
            allowed_rows.extend([row] * len(plan.allowed))
            allowed_cols.extend(plan.allowed)
        banned = plan.banned_now()
        banned_rows.extend([row] * len(banned))
        banned_cols.extend(banned)
        for token, bias in plan.bias:
            bias_rows.append(row)
            bias_cols.append(token)
            bias_values.append(bias)
        if plan.penalized:
            penalized.append(row)
    if allowed_rows:
        rows = sorted(set(allowed_rows))
        keep = torch.zeros((len(logits), logits.shape[1]), dtype=torch.bool, device=device)
        keep[_index(allowed_rows, device), _index(allowed_cols, device)] = True
        restricted = torch.zeros(len(logits), dtype=torch.bool, device=device)
        restricted[_index(rows, device)] = True
        logits.masked_fill_(restricted.unsqueeze(1) & ~keep, float("-inf"))
    if banned_rows:
        logits[_index(banned_rows, device), _index(banned_cols, device)] = float("-inf")
    if bias_rows:
        values = torch.tensor(bias_values, dtype=logits.dtype, device=device)
        logits.index_put_((_index(bias_rows, device), _index(bias_cols, device)), values, accumulate=True)
    if penalized:
        penalties.apply(logits, penalized, [plans[i] for i in penalized])
    return logits


def _index(values: Sequence[int], device: torch.device) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.long, device=device)
