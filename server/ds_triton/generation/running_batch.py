"""The state of the sequences in the cache: their rows, lengths and last tokens.

Rows come from ``SlotTable`` (running sequences in rows ``0..n-1``, prefilling
ones above); the K/V live in ``SlotKVCache``. Per row, ``lengths`` (tokens in
the cache, i.e. the position of the next token) and ``last_tokens`` (the input
of the next decode step) are kept on the device, with a host copy of the
lengths, so a decode step needs no host round trip before its forward pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Generic, TypeVar

import torch

from ds_triton.generation.kv_cache import copy_rows
from ds_triton.generation.model_runner import ModelRunner
from ds_triton.generation.slots import Move, RowCopy, SlotTable, Swap

T = TypeVar("T")


class RunningBatch(Generic[T]):
    """Sequences holding cache rows, and the inputs of their next forward passes."""

    @torch.inference_mode()
    def __init__(self, runner: ModelRunner, rows: int, row_tokens: int) -> None:
        self.runner = runner
        self.row_tokens = row_tokens
        self.cache = runner.new_cache(rows, row_tokens)
        self.table: SlotTable[T] = SlotTable(rows)
        device = runner.device
        self.lengths = torch.zeros(rows, dtype=torch.long, device=device)
        self.last_tokens = torch.zeros(rows, dtype=torch.long, device=device)
        self._host_lengths = [0] * rows

    @property
    def running(self) -> int:
        """Sequences decoding (rows ``0..running-1``)."""
        return self.table.running

    def running_sequences(self) -> list[T]:
        return self.table.running_occupants()

    @torch.inference_mode()
    def acquire(self, sequence: T) -> int:
        """A free row for ``sequence`` (about to be prefilled)."""
        row = self.table.acquire(sequence)
        self._set_length(row, 0)
        return row

    @torch.inference_mode()
    def prefill(
        self,
        sequences: Sequence[T],
        chunks: Sequence[Sequence[int]],
        start: int,
        every_position: bool = False,
        logits: bool = True,
    ) -> torch.Tensor | None:
        """Write prompt ``chunks`` of ``sequences`` (each holding ``start`` tokens); their logits.

        With ``every_position``, the logits of every chunk position; without
        ``logits``, none (``ModelRunner.prefill``).
        """
        rows = [self.table.row_of(s) for s in sequences]
        result = self.runner.prefill(self.cache, rows, chunks, start, every_position, logits)
        for row, chunk in zip(rows, chunks, strict=True):
            self._set_length(row, start + len(chunk))
        return result

    @torch.inference_mode()
    def start_running(self, sequence: T, first_token: int) -> None:
        """``sequence`` (fully prefilled) decodes from the next step on, after ``first_token``."""
        self._apply(self.table.start_running(sequence))
        self.last_tokens[self.table.row_of(sequence)] = first_token

    @torch.inference_mode()
    def release(self, sequence: T) -> None:
        """``sequence`` leaves; its row is free (the running block stays contiguous)."""
        self._apply(self.table.release(sequence))

    @torch.inference_mode()
    def decode(self) -> torch.Tensor:
        """Next-token logits (running, vocab) for the running rows."""
        count = self.table.running
        lengths = self._host_lengths[:count]
        longest = max(lengths)
        return self.runner.decode(
            self.cache,
            self.last_tokens[:count],
            self.lengths[:count],
            longest,
            uniform=min(lengths) == longest,
        )

    @torch.inference_mode()
    def advance(self, tokens: torch.Tensor) -> None:
        """Record a decode step: every running row grew by one token, ``tokens`` are next inputs."""
        count = self.table.running
        self.last_tokens[:count] = tokens
        self.lengths[:count] += 1
        for row in range(count):
            self._host_lengths[row] += 1

    @torch.inference_mode()
    def clear(self) -> None:
        """Forget every sequence (after a failure that may have left the cache inconsistent)."""
        self.table.clear()
        self.lengths.zero_()
        self._host_lengths = [0] * self.table.capacity

    def _set_length(self, row: int, length: int) -> None:
        self._host_lengths[row] = length
        self.lengths[row] = length

    def _apply(self, copies: list[RowCopy]) -> None:
        if not copies:
            return
        self.cache.apply(copies, self._host_lengths)
        for copy in copies:
            copy_rows(self.lengths, copy)
            copy_rows(self.last_tokens, copy)
            if isinstance(copy, Move):
                self._host_lengths[copy.target] = self._host_lengths[copy.source]
            elif isinstance(copy, Swap):
                lengths = self._host_lengths
                lengths[copy.first], lengths[copy.second] = lengths[copy.second], lengths[copy.first]
