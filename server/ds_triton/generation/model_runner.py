"""The two forward passes of in-flight batching over the slot KV cache.

Wraps the DeepSpeed inference engine (any Hugging Face causal LM behind it):

- ``prefill`` writes a chunk of prompt tokens for some sequences into their cache
  rows (right-padded; every row starts at the same column) and returns the
  logits at each row's last chunk token;
- ``decode`` advances the running block of rows by one token each, every row at
  its own position, and returns the next-token logits.

Position ids are always passed, so every row computes exactly what it would
alone whatever the padding; models whose forward takes none are refused.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import torch

from ds_triton.errors import ModelLoadError
from ds_triton.generation.kv_cache import SlotKVCache, WritePlan


def pad_token_id(tokenizer: Any) -> int:
    """The id prompts are padded with (its value never matters: padded positions are discarded)."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0


class ModelRunner:
    """Runs the model; knows its keyword names and how it wants its decode mask.

    The engine's one seam to the model: a tensor-parallel instance runs a
    subclass (``ds_triton.tensor_parallel.runner``) that mirrors each call on
    its workers.
    """

    def __init__(self, forward: Any, module: Any, device: str, pad_token_id: int) -> None:
        self._forward = forward
        self.config = module.config
        self.device = torch.device(device)
        self.pad_token_id = pad_token_id
        signature = inspect.signature(module.forward).parameters
        # transformers 5 calls it ``cache``; earlier releases ``past_key_values``.
        self._cache_arg = "cache" if "cache" in signature else "past_key_values"
        self._logits_to_keep = "logits_to_keep" in signature
        if "position_ids" not in signature:
            raise ModelLoadError(
                f"{type(module).__name__} takes no position_ids; in-flight batching needs them "
                "to run sequences of different lengths in one batch"
            )
        self._attention = getattr(self.config, "_attn_implementation", None) or "eager"
        self._dtype = next(module.parameters()).dtype
        self._rows = torch.arange(256, dtype=torch.long, device=self.device)

    def new_cache(self, rows: int, row_tokens: int) -> SlotKVCache:
        """The slot KV cache of the running batch (``rows`` sequences of ``row_tokens``)."""
        return SlotKVCache.for_model(self.config, rows, row_tokens, self.device)

    def close(self) -> None:
        """Release what the runner holds besides the model (nothing on one device)."""

    @torch.inference_mode()
    def prefill(
        self,
        cache: SlotKVCache,
        rows: Sequence[int],
        chunks: Sequence[Sequence[int]],
        start: int,
        every_position: bool = False,
        logits: bool = True,
    ) -> torch.Tensor | None:
        """Write ``chunks[i]`` into cache row ``rows[i]`` from column ``start``.

        Every row must hold exactly ``start`` tokens already. Returns the logits
        (len(rows), vocab) at each row's last chunk token; with ``every_position``
        (prompt log-probabilities) the logits (len(rows), longest chunk, vocab) at
        every chunk position; neither (None) without ``logits``: a chunk in the
        middle of a prompt skips the LM head, which reads the whole vocabulary's
        weights.
        """
        width = max(len(c) for c in chunks)
        ids = torch.full((len(chunks), width), self.pad_token_id, dtype=torch.long)
        for row, chunk in enumerate(chunks):
            ids[row, : len(chunk)] = torch.tensor(chunk, dtype=torch.long)
        positions = torch.arange(start, start + width, dtype=torch.long, device=self.device)
        last = torch.tensor([[len(c) - 1] for c in chunks], dtype=torch.long)
        contiguous = list(rows) == list(range(len(rows)))
        cache.plan = WritePlan(
            self.to_device(torch.tensor(list(rows), dtype=torch.long)), contiguous, start, None,
            start + width, width,
        )  # fmt: skip
        # Right padding needs no padding mask: a real token at column c only attends to
        # columns <= c, which are real (this chunk or the row's history); what padded
        # queries compute is discarded, and the cache columns they fill are overwritten
        # by the row's next tokens before anything reads them.
        positions = positions.expand(len(chunks), width)
        if every_position:
            return self._run(self.to_device(ids), positions, None, cache, None, every=True)
        if not logits:
            last = last[:, :0]  # keep no position: no logits at all
        result = self._run(self.to_device(ids), positions, None, cache, self.to_device(last))
        return result if logits else None

    def to_device(self, tensor: torch.Tensor) -> torch.Tensor:
        """A host tensor on the model's device without a sync: a GPU copies it from pinned
        memory while the host goes on (a plain copy would wait for all queued work first)."""
        if self.device.type == "cpu":
            return tensor
        return tensor.pin_memory().to(self.device, non_blocking=True)

    @torch.inference_mode()
    def decode(
        self, cache: SlotKVCache, tokens: torch.Tensor, positions: torch.Tensor, longest: int, uniform: bool
    ) -> torch.Tensor:
        """One step for running rows ``0..n-1``: ``tokens`` (n,) at ``positions`` (n,).

        ``longest`` is the largest position (known on the host, so no device sync);
        ``uniform`` says every row is at that position (no mask needed).
        """
        count = tokens.shape[0]
        kv_length = longest + 1
        cache.plan = WritePlan(self._first_rows(count), True, 0, positions, kv_length, 1)
        mask = None if uniform else self._decode_mask(positions, kv_length)
        return self._run(tokens.unsqueeze(1), positions.unsqueeze(1), mask, cache, None)

    def _first_rows(self, count: int) -> torch.Tensor:
        """``arange(count)`` on the device, sliced from a kept tensor (no allocation per step)."""
        if self._rows.shape[0] < count:
            self._rows = torch.arange(count, dtype=torch.long, device=self.device)
        return self._rows[:count]

    def _decode_mask(self, positions: torch.Tensor, kv_length: int) -> torch.Tensor:
        """Row r attends to columns 0..positions[r] (its own history and new token).

        Built on the device in the layout the attention implementation takes, so
        transformers does not inspect it (which would sync the device every step).
        """
        columns = torch.arange(kv_length, device=positions.device)
        allowed = columns.unsqueeze(0) <= positions.unsqueeze(1)
        if self._attention == "sdpa":
            return allowed[:, None, None, :]
        if self._attention == "eager":
            blocked = torch.finfo(self._dtype).min
            zero = torch.zeros((), dtype=self._dtype, device=positions.device)
            return torch.where(allowed, zero, blocked)[:, None, None, :]
        return allowed.long()  # other kernels take the 2D padding mask

    def _run(
        self,
        ids: torch.Tensor,
        positions: torch.Tensor,
        mask: torch.Tensor | None,
        cache: SlotKVCache,
        last: torch.Tensor | None,
        every: bool = False,
    ) -> torch.Tensor:
        kwargs: dict[str, Any] = {
            "input_ids": ids,
            "position_ids": positions,
            "attention_mask": mask,
            "use_cache": True,
            self._cache_arg: cache,
        }
        if self._logits_to_keep:
            kwargs["logits_to_keep"] = 0 if every else 1 if last is None else last
        logits = self._forward(**kwargs).logits
        if every:
            return logits
        if last is None:
            return logits[:, -1, :]
        if last.shape[1] == 0:
            return logits[:, :0, :]
        if self._logits_to_keep:
            return logits[:, 0, :]
        return logits.gather(1, last.unsqueeze(-1).expand(-1, -1, logits.shape[-1])).squeeze(1)

