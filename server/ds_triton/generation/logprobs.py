"""Log-probabilities of generated (and prompt) tokens, in the vLLM backend's format.

Per token, the ``logprobs`` output holds a dict from token id (a string) to
``{"logprob", "rank", "decoded_token"}``: the chosen token first, then the
``logprobs`` most likely tokens (rank 1 first; the chosen one appears once).
Values are ``log_softmax`` in fp32 of the logits vLLM's ``logprobs_mode`` names:
``raw_logprobs`` (vLLM's default: the model's own distribution, before any
processing) or ``processed_logprobs`` (after penalties, bias, masks, temperature,
min-p, top-k and top-p: the distribution the token was drawn from). A rank counts
the tokens at least as likely as this one (vLLM's definition: 1 is the most likely).

The chosen token's ``decoded_token`` is the text it added to ``text_output``, so
the chosen entries of a response spell that response's text exactly (text held
back, e.g. an incomplete UTF-8 character or a possible stop string, counts for the
token that releases it). The alternatives are each decoded alone, as vLLM does.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class TokenLogprobs:
    """One position's log-probabilities, as computed (decoded text comes later).

    Attributes:
        token_id: The chosen token.
        logprob: Its log-probability.
        rank: Its rank (1 = most likely).
        top: The most likely tokens, best first: (token id, log-probability).
    """

    token_id: int
    logprob: float
    rank: int
    top: tuple[tuple[int, float], ...] = ()


@dataclass(frozen=True)
class LogprobEntry:
    """One position of the ``logprobs`` output: the chosen token and the alternatives.

    Attributes:
        token_id, logprob, rank: The chosen token (see ``TokenLogprobs``).
        text: The chosen token's ``decoded_token``.
        top: The alternatives: (token id, log-probability, decoded text), best first.
    """

    token_id: int
    logprob: float
    rank: int
    text: str
    top: tuple[tuple[int, float, str], ...] = ()

    def as_json(self) -> dict[str, dict[str, Any]]:
        entry = {str(self.token_id): _logprob(self.logprob, self.rank, self.text)}
        for rank, (token, logprob, text) in enumerate(self.top, start=1):
            entry.setdefault(str(token), _logprob(logprob, rank, text))
        return entry


def _logprob(logprob: float, rank: int, text: str) -> dict[str, Any]:
    return {"logprob": logprob, "rank": rank, "decoded_token": text}


def logprobs_json(entries: Sequence[LogprobEntry | None] | None) -> str:
    """The ``logprobs`` output of one response (``null`` when logprobs were not requested).

    A ``None`` entry (only in prompt logprobs: the first prompt token has no
    log-probability) is written as ``null``, like vLLM's ``prompt_logprobs``.
    """
    if entries is None:
        return "null"
    return json.dumps([None if e is None else e.as_json() for e in entries])


class DeviceLogprobs:
    """Log-probabilities of some rows of a batch, still on the device until ``to_host``.

    Built while the step's tensors are on the device; copied to the host once per
    step, after the sampled tokens (on a GPU that copy no longer waits for compute).
    """

    def __init__(self, scores: torch.Tensor, chosen: torch.Tensor, counts: Sequence[int]) -> None:
        """Chosen token, its rank and the ``counts[i]`` best tokens of each row of ``scores``.

        Args:
            scores: (N, V) logits (log-probabilities up to a constant per row; -inf allowed).
            chosen: (N,) the token each row chose.
            counts: How many top tokens each row wants (0: only the chosen one).
        """
        self._counts = list(counts)
        self._most = max(self._counts, default=0)
        scores = scores.float()
        chosen = chosen.to(scores.device).unsqueeze(1)
        # log_softmax(x) = x - logsumexp(x): only the values listed are normalised, so the
        # (N, V) pass over the vocabulary is one reduction instead of a new (N, V) tensor.
        total = torch.logsumexp(scores, dim=1, keepdim=True)
        chosen_score = scores.gather(1, chosen)
        top_score, top_ids = scores.topk(max(self._most, 1), dim=1)
        rank = _rank(scores, chosen_score, top_score)
        columns = [chosen.double(), (chosen_score - total).double(), rank.double()]
        if self._most:
            columns += [top_ids.double(), (top_score - total).double()]
        # float64 holds every token id exactly, so one tensor (one copy) carries it all.
        self._packed = torch.cat(columns, dim=1)

    def to_host(self) -> list[TokenLogprobs]:
        """One ``TokenLogprobs`` per row (a device-to-host copy)."""
        most = self._most
        result = []
        for row, count in zip(self._packed.tolist(), self._counts, strict=True):
            ids, values = row[3 : 3 + count], row[3 + most : 3 + most + count]
            top = tuple((int(token), value) for token, value in zip(ids, values, strict=True))
            result.append(TokenLogprobs(int(row[0]), row[1], int(row[2]), top))
        return result


def _rank(scores: torch.Tensor, chosen: torch.Tensor, top: torch.Tensor) -> torch.Tensor:
    """(N, 1) how many tokens score at least the chosen one's (1: the most likely).

    A chosen token scoring above the last of a row's ``top`` scores is ranked among
    them; the others count their whole row. On a GPU the whole count is cheap and
    choosing would cost a synchronisation, so every row counts there.
    """
    if scores.device.type != "cpu":
        return (scores >= chosen).sum(dim=1, keepdim=True)
    rank = (top >= chosen).sum(dim=1, keepdim=True)
    outside = (chosen <= top[:, -1:]).squeeze(1).nonzero().squeeze(1)
    if len(outside):
        rank[outside] = (scores[outside] >= chosen[outside]).sum(dim=1, keepdim=True)
    return rank


def gather_logprobs(
    scores: torch.Tensor, chosen: torch.Tensor, counts: Sequence[int]
) -> list[TokenLogprobs]:
    """``DeviceLogprobs(...).to_host()``: the chosen token, its rank and the top tokens per row."""
    if len(counts) == 0:
        return []
    return DeviceLogprobs(scores, chosen, counts).to_host()


def prompt_logprobs(
    logits: torch.Tensor, prompt_ids: Sequence[int], count: int
) -> list[TokenLogprobs]:
    """Log-probabilities of prompt tokens 1..n-1 given the tokens before each (raw logits).

    Args:
        logits: (n, V) or (n-1, V) logits at the prompt's positions (position i predicts token i+1).
        prompt_ids: The prompt's n tokens.
        count: How many top tokens to list per position.
    """
    targets = torch.tensor(list(prompt_ids[1:]), dtype=torch.long, device=logits.device)
    if len(targets) == 0:
        return []
    return gather_logprobs(logits[: len(targets)], targets, [count] * len(targets))


class TokenTexts:
    """Each token's text decoded alone, cached (the ``decoded_token`` of alternatives)."""

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        self._cache: dict[int, str] = {}

    def __call__(self, token_id: int) -> str:
        text = self._cache.get(token_id)
        if text is None:
            text = str(self._tokenizer.decode([token_id]) or "")
            self._cache[token_id] = text
        return text

    def entry(self, logprobs: TokenLogprobs, text: str) -> LogprobEntry:
        """``logprobs`` with the chosen token's ``text`` and its alternatives' texts."""
        top = tuple((token, value, self(token)) for token, value in logprobs.top)
        return LogprobEntry(logprobs.token_id, logprobs.logprob, logprobs.rank, text, top)

    def entries(self, positions: Iterable[TokenLogprobs]) -> list[LogprobEntry]:
        """Entries whose chosen tokens are decoded alone too (prompt logprobs)."""
        return [self.entry(p, self(p.token_id)) for p in positions]


class LogprobsRecorder:
    """One sequence's log-probabilities between two responses, and their running sum.

    ``record`` is called once per generated token with the text that token added
    to the output; ``take`` hands over what the next response carries.
    """

    def __init__(self, texts: TokenTexts | None, listed: bool, cumulative: bool) -> None:
        """
        Args:
            texts: Decodes the alternatives (None: nothing is listed).
            listed: The response lists each token's log-probabilities.
            cumulative: The response carries the running sum.
        """
        self._texts = texts
        self._listed = listed and texts is not None
        self._cumulative = cumulative
        self._pending: list[LogprobEntry] = []
        self.total = 0.0

    def record(self, value: TokenLogprobs | None, text: str) -> None:
        if value is None:
            return
        self.total += value.logprob
        if self._listed and self._texts is not None:
            self._pending.append(self._texts.entry(value, text))

    def take(self) -> tuple[tuple[LogprobEntry, ...] | None, float | None]:
        """The entries since the last ``take`` (None when not listed) and the running sum."""
        entries = None
        if self._listed:
            entries, self._pending = tuple(self._pending), []
        return entries, (self.total if self._cumulative else None)
