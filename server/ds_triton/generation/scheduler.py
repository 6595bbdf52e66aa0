"""What each engine step runs: token-budget admission and chunked prefill (as TGI and vLLM do).

**Admission.** A waiting request starts once a cache row is free and the KV
tokens it may hold (prompt + ``max_tokens``) fit in what is left of
``max_batch_total_tokens``. Tokens are reserved up front, so a running
sequence never runs out of cache mid-stream. Requests start in arrival order:
a long request at the head is not overtaken (no starvation).

**Chunked prefill.** Each step prefills at most ``max_prefill_tokens`` prompt
tokens (padding included) in one forward pass, then runs the decode step of
the running sequences. A long prompt is prefilled over several steps in chunks,
so running streams get a token every step instead of stalling for the whole
prompt. Short prompts at the head of the queue are prefilled together in one
forward while their padded size fits the chunk.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar


class Prefillable(Protocol):
    """A sequence whose prompt is being written into the cache."""

    @property
    def prompt_length(self) -> int: ...

    @property
    def prefilled(self) -> int:
        """Prompt tokens already in the cache."""


S = TypeVar("S", bound=Prefillable)


@dataclass(frozen=True)
class PrefillChunk(Generic[S]):
    """One prefill forward: ``lengths[i]`` prompt tokens of ``sequences[i]``, from column ``start``."""

    sequences: tuple[S, ...]
    start: int
    lengths: tuple[int, ...]

    @property
    def width(self) -> int:
        return max(self.lengths)

    @property
    def padded_tokens(self) -> int:
        return self.width * len(self.sequences)

    def completes(self, index: int) -> bool:
        """Whether this chunk writes the last prompt token of ``sequences[index]``."""
        sequence = self.sequences[index]
        return self.start + self.lengths[index] == sequence.prompt_length


def plan_prefill(queue: Sequence[S], max_tokens: int) -> PrefillChunk[S] | None:
    """The next prefill forward for ``queue`` (prefilling sequences, oldest first).

    The oldest sequence always gets a chunk: the rest of its prompt, capped at
    ``max_tokens``. When that is its whole prompt, the next ones join while every
    prompt of the chunk fits whole and the padded total stays within ``max_tokens``.
    """
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
    if not queue:
        return None
    head = queue[0]
    remaining = head.prompt_length - head.prefilled
    if head.prefilled > 0 or remaining > max_tokens:
        return PrefillChunk((head,), head.prefilled, (min(remaining, max_tokens),))
    chosen, lengths, width = [head], [remaining], remaining
    for sequence in queue[1:]:
        length = sequence.prompt_length - sequence.prefilled
        if sequence.prefilled > 0 or max(width, length) * (len(chosen) + 1) > max_tokens:
            break
        chosen.append(sequence)
        lengths.append(length)
        width = max(width, length)
    return PrefillChunk(tuple(chosen), 0, tuple(lengths))


class TokenBudget:
    """KV tokens reserved by admitted sequences, against ``capacity``."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.reserved = 0

    def fits(self, tokens: int) -> bool:
        return self.reserved + tokens <= self.capacity

    def take(self, tokens: int) -> None:
        if not self.fits(tokens):
            raise ValueError(f"{tokens} tokens do not fit ({self.reserved}/{self.capacity} reserved)")
        self.reserved += tokens

    def give_back(self, tokens: int) -> None:
        self.reserved = max(0, self.reserved - tokens)

    def clear(self) -> None:
        self.reserved = 0
