"""The tensors of the running batch: KV cache, attention mask, positions, last tokens.

Rows are sequences; columns are cache positions shared by all rows, with each
row's history right-aligned (left padding). New sequences join by padding the
shorter side on the left and concatenating rows; finished ones leave by
selecting rows, and columns that are padding in every remaining row are cut so
the cache never grows from churn alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ds_triton.generation.model_runner import Prefill, cache_layers


class RunningBatch:
    """State of the sequences currently decoding together."""

    def __init__(self) -> None:
        self.cache: Any = None
        self.attention_mask = torch.zeros((0, 0), dtype=torch.long)
        self.next_positions = torch.zeros(0, dtype=torch.long)
        self.last_tokens = torch.zeros(0, dtype=torch.long)

    def __len__(self) -> int:
        return int(self.last_tokens.shape[0])

    @property
    def length(self) -> int:
        """Cache columns (the longest history in the batch, padding included)."""
        return int(self.attention_mask.shape[1])

    def join(self, prefill: Prefill, rows: Sequence[int], first_tokens: torch.Tensor) -> None:
        """Append rows ``rows`` of ``prefill`` whose first sampled tokens are ``first_tokens``."""
        if not rows:
            return
        index = torch.tensor(list(rows), dtype=torch.long, device=prefill.attention_mask.device)
        if len(rows) != prefill.attention_mask.shape[0]:
            for layer in cache_layers(prefill.cache):
                layer.batch_select_indices(index)
        new_mask = prefill.attention_mask.index_select(0, index)
        new_positions = prefill.next_positions.index_select(0, index)
        if self.cache is None or len(self) == 0:
            self.cache = prefill.cache
            self.attention_mask = new_mask
            self.next_positions = new_positions
            self.last_tokens = first_tokens
            self._trim()
            return
        width = max(self.length, new_mask.shape[1])
        old_pad, new_pad = width - self.length, width - new_mask.shape[1]
        for old, new in zip(cache_layers(self.cache), cache_layers(prefill.cache), strict=True):
            old.keys = torch.cat([_pad_left(old.keys, old_pad), _pad_left(new.keys, new_pad)])
            old.values = torch.cat([_pad_left(old.values, old_pad), _pad_left(new.values, new_pad)])
        self.attention_mask = torch.cat(
            [_pad_mask(self.attention_mask, old_pad), _pad_mask(new_mask, new_pad)]
        )
        self.next_positions = torch.cat([self.next_positions, new_positions])
        self.last_tokens = torch.cat([self.last_tokens, first_tokens])
        self._trim()

    def keep(self, rows: Sequence[int]) -> None:
        """Keep only ``rows`` (in this order); the others leave the batch."""
        if len(rows) == len(self):
            return
        if not rows:
            self.__init__()  # type: ignore[misc]
            return
        index = torch.tensor(list(rows), dtype=torch.long, device=self.attention_mask.device)
        for layer in cache_layers(self.cache):
            layer.batch_select_indices(index)
        self.attention_mask = self.attention_mask.index_select(0, index)
        self.next_positions = self.next_positions.index_select(0, index)
        self.last_tokens = self.last_tokens.index_select(0, index)
        self._trim()

    def decode_inputs(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Inputs of the next decode step: last tokens, mask with one more column, positions."""
        ones = torch.ones((len(self), 1), dtype=self.attention_mask.dtype, device=self.attention_mask.device)
        return self.last_tokens, torch.cat([self.attention_mask, ones], dim=1), self.next_positions

    def advance(self, cache: Any, attention_mask: torch.Tensor, tokens: torch.Tensor) -> None:
        """Record a finished decode step and the tokens it produced."""
        self.cache = cache
        self.attention_mask = attention_mask
        self.next_positions = self.next_positions + 1
        self.last_tokens = tokens

    def _trim(self) -> None:
        """Drop leading columns that are padding in every row."""
        if self.length == 0:
            return
        used = self.attention_mask.any(dim=0).nonzero()
        first = int(used[0]) if used.numel() else self.length
        if first == 0:
            return
        self.attention_mask = self.attention_mask[:, first:]
        for layer in cache_layers(self.cache):
            layer.keys = layer.keys[:, :, first:, :]
            layer.values = layer.values[:, :, first:, :]


def _pad_left(tensor: torch.Tensor, columns: int) -> torch.Tensor:
    """Zero-pad a (B, H, L, D) K/V tensor with ``columns`` positions on the left."""
    if columns == 0:
        return tensor
    batch, heads, _, dim = tensor.shape
    zeros = torch.zeros((batch, heads, columns, dim), dtype=tensor.dtype, device=tensor.device)
    return torch.cat([zeros, tensor], dim=2)


def _pad_mask(mask: torch.Tensor, columns: int) -> torch.Tensor:
    if columns == 0:
        return mask
    zeros = torch.zeros((mask.shape[0], columns), dtype=mask.dtype, device=mask.device)
    return torch.cat([zeros, mask], dim=1)
