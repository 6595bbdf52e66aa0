"""A preallocated KV cache with one row ("slot") per sequence, behind transformers' ``Cache`` API.

Each attention layer owns two buffers of shape (rows, kv_heads, row_tokens,
head_dim), allocated once (on the first forward, when heads, head size, dtype
and device are known) and written in place:

- a **prefill** forward writes a chunk of prompt tokens into the rows of the
  sequences being prefilled, at the columns that follow what they already hold
  (one shared start column per forward); attention reads those rows;
- a **decode** forward writes one token per running sequence, each at its own
  column (its length), and attention reads the running block ``[0, n)`` of
  rows up to the longest length: a view of the buffers, never a copy.

So a sequence joins by having its prompt written into its row, and leaves by
freeing its row; nothing is concatenated. Rows never move except when
``SlotTable`` asks for one row copy to keep the running block contiguous.

Every model that calls ``cache.update(keys, values, layer_idx)`` and sizes its
mask through ``get_mask_sizes``/``get_seq_length`` (every full-attention
causal LM in transformers 5, e.g. Llama, Qwen2, Mistral, GPT-2, OPT) works
unchanged; sliding-window and linear-attention layers are refused at load.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from transformers.cache_utils import Cache, CacheLayerMixin

from ds_triton.errors import ModelLoadError
from ds_triton.generation.slots import Move, RowCopy, Swap


@dataclass(frozen=True)
class WritePlan:
    """Where the next forward's new keys and values go.

    Attributes:
        rows: Cache rows of the forward's batch, in batch order.
        contiguous: ``rows`` is ``0..len(rows)-1`` (attention reads a view).
        start: Column of the first new token (prefill; the same for every row).
        columns: Column of each row's new token (decode, one query token per row).
        kv_length: Columns attention reads: history plus the new tokens.
        query_length: New tokens per row in this forward.
    """

    rows: torch.Tensor
    contiguous: bool
    start: int
    columns: torch.Tensor | None
    kv_length: int
    query_length: int


class SlotLayer(CacheLayerMixin):
    """One attention layer's K/V buffers, written at the positions of the current plan."""

    is_sliding = False
    is_compileable = False
    is_croppable = False

    def __init__(self, owner: SlotKVCache) -> None:
        super().__init__()
        self._owner = owner

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        rows, tokens = self._owner.rows, self._owner.row_tokens
        heads = key_states.shape[1]
        # Zeros, not empty(): masked positions are multiplied by a zero weight, and
        # uninitialised memory may hold NaN (0 * NaN is NaN).
        self.keys = key_states.new_zeros((rows, heads, tokens, key_states.shape[-1]))
        self.values = value_states.new_zeros((rows, heads, tokens, value_states.shape[-1]))
        self.device = key_states.device
        self.is_initialized = True

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        keys, values = self._buffers()
        plan = self._owner.plan
        if plan.columns is not None:  # decode: each row writes its one token at its own column
            keys[plan.rows, :, plan.columns] = key_states[:, :, 0]
            values[plan.rows, :, plan.columns] = value_states[:, :, 0]
        else:
            end = plan.start + plan.query_length
            keys[plan.rows, :, plan.start : end] = key_states
            values[plan.rows, :, plan.start : end] = value_states
        if plan.contiguous:
            count = plan.rows.shape[0]
            return keys[:count, :, : plan.kv_length], values[:count, :, : plan.kv_length]
        # Rows scattered over the cache (prefill only): attention reads a gathered copy
        # of just those rows' histories, the size of the attention input itself.
        return keys[plan.rows, :, : plan.kv_length], values[plan.rows, :, : plan.kv_length]

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self._owner.plan.kv_length, 0

    def get_seq_length(self) -> int:
        plan = self._owner.plan
        return plan.kv_length - plan.query_length

    def get_max_length(self) -> int:
        return self._owner.row_tokens

    def reset(self) -> None:
        if self.is_initialized:
            for buffer in self._buffers():
                buffer.zero_()

    def copy_rows(self, copy: RowCopy, columns: int) -> None:
        """Apply ``copy`` to the first ``columns`` positions of the rows it names."""
        if not self.is_initialized or columns == 0:
            return
        for buffer in self._buffers():
            copy_rows(buffer, copy, columns)

    def _buffers(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.keys is None or self.values is None:
            raise RuntimeError("the KV cache is used before its first forward pass")
        return self.keys, self.values


class SlotKVCache(Cache):
    """The KV cache of the running batch: ``rows`` slots of ``row_tokens`` positions per layer."""

    @classmethod
    def for_model(cls, config: Any, rows: int, row_tokens: int, device: torch.device) -> SlotKVCache:
        """A cache for ``config``'s attention layers; ``ModelLoadError`` when they do not fit one."""
        return cls(attention_layers(config, row_tokens), rows, row_tokens, device)

    def __init__(self, num_layers: int, rows: int, row_tokens: int, device: torch.device) -> None:
        self.rows = rows
        self.row_tokens = row_tokens
        self.device = device
        self.plan = WritePlan(torch.zeros(0, dtype=torch.long), True, 0, None, 0, 0)
        super().__init__(layers=[SlotLayer(self) for _ in range(num_layers)])

    @property
    def slot_layers(self) -> list[SlotLayer]:
        return [layer for layer in self.layers if isinstance(layer, SlotLayer)]

    @property
    def allocated_bytes(self) -> int:
        total = 0
        for layer in self.slot_layers:
            for tensor in (layer.keys, layer.values):
                if tensor is not None:
                    total += tensor.numel() * tensor.element_size()
        return total

    def apply(self, copies: list[RowCopy], lengths: list[int]) -> None:
        """Make the row copies ``SlotTable`` asked for; ``lengths`` are the rows' token counts."""
        for copy in copies:
            if isinstance(copy, Move):
                columns = lengths[copy.source]
            else:
                columns = max(lengths[copy.first], lengths[copy.second])
            for layer in self.slot_layers:
                layer.copy_rows(copy, columns)


def copy_rows(tensor: torch.Tensor, copy: RowCopy, columns: int | None = None) -> None:
    """Apply ``copy`` to the rows (dim 0) of ``tensor``, only its first ``columns`` positions
    (dim 2) when given. Rows are addressed by plain ints: no index tensor goes to the device."""

    def row(index: int) -> torch.Tensor:
        return tensor[index] if columns is None else tensor[index, :, :columns]

    if isinstance(copy, Move):
        row(copy.target).copy_(row(copy.source))
    elif isinstance(copy, Swap):
        held = row(copy.first).clone()
        row(copy.first).copy_(row(copy.second))
        row(copy.second).copy_(held)
    else:  # pragma: no cover - RowCopy is closed
        raise TypeError(f"unknown row copy {copy!r}")


def attention_layers(config: Any, row_tokens: int) -> int:
    """Number of KV-cache layers of ``config``, or ``ModelLoadError`` for layouts the cache lacks.

    Sliding-window layers are full attention as long as a sequence fits in the
    window, so they are accepted when ``row_tokens`` does.
    """
    text = config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
    count = int(text.num_hidden_layers)
    declared = getattr(text, "layer_types", None)
    types = list(declared or ["full_attention"] * count)
    unsupported = sorted({t for t in types if t not in ("full_attention", "sliding_attention")})
    if unsupported:
        raise ModelLoadError(
            f"{getattr(text, 'model_type', 'this model')}: layers of type {', '.join(unsupported)} "
            "are not supported by in-flight batching (full-attention causal LMs only)"
        )
    window = getattr(text, "sliding_window", None)
    sliding = "sliding_attention" in types or (
        declared is None and getattr(text, "use_sliding_window", True) is not False
    )
    if sliding and isinstance(window, int) and window < row_tokens:
        raise ModelLoadError(
            f"the model attends over a sliding window of {window} tokens but a sequence may hold "
            f"{row_tokens} (max_prompt_tokens + max_tokens_limit); lower them to at most {window}"
        )
    return count
