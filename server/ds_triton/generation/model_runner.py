"""The two forward passes of in-flight batching: prefill new prompts, decode one step.

Wraps the DeepSpeed inference engine (any Hugging Face causal LM behind it) and
counts forward passes, which is how tests prove that concurrent streams share
them. Prompts are left-padded so every row's newest token sits in the last
column; position ids count only real tokens, so a padded row computes exactly
what it would alone.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class Prefill:
    """Result of one prefill pass over N prompts (left-padded to the longest, P)."""

    logits: torch.Tensor  # (N, V) at each prompt's last token
    cache: Any  # the model's KV cache, N rows, P positions
    attention_mask: torch.Tensor  # (N, P), 0 on padding
    next_positions: torch.Tensor  # (N,) position id of each row's next token


class ModelRunner:
    """Runs the model; knows its cache argument's name and counts forward passes."""

    def __init__(self, forward: Any, module: Any, device: str, pad_token_id: int) -> None:
        self._forward = forward
        self.device = torch.device(device)
        self.pad_token_id = pad_token_id
        signature = inspect.signature(module.forward).parameters
        # transformers 5 calls it ``cache``; earlier releases ``past_key_values``.
        self._cache_arg = "cache" if "cache" in signature else "past_key_values"
        self._logits_to_keep = "logits_to_keep" in signature
        # Models that take position ids must get them: with left padding the
        # default (column index) would shift every padded row's positions.
        self._position_ids = "position_ids" in signature
        self.prefill_steps = 0
        self.decode_steps = 0

    @property
    def forward_steps(self) -> int:
        return self.prefill_steps + self.decode_steps

    @torch.inference_mode()
    def prefill(self, prompts: Sequence[Sequence[int]]) -> Prefill:
        """One forward over all ``prompts``; returns their last logits and KV cache."""
        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, prompt in enumerate(prompts):
            ids[row, width - len(prompt) :] = torch.tensor(prompt, dtype=torch.long)
            mask[row, width - len(prompt) :] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
        logits, cache = self._run(ids, mask, positions, cache=None)
        self.prefill_steps += 1
        _zero_padding(cache, mask)
        return Prefill(logits, cache, mask, positions[:, -1] + 1)

    @torch.inference_mode()
    def decode(
        self, tokens: torch.Tensor, attention_mask: torch.Tensor, positions: torch.Tensor, cache: Any
    ) -> tuple[torch.Tensor, Any]:
        """One step for every running row: ``tokens`` (B,) at ``positions`` (B,)."""
        logits, cache = self._run(tokens.unsqueeze(1), attention_mask, positions.unsqueeze(1), cache)
        self.decode_steps += 1
        return logits, cache

    def _run(
        self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, cache: Any
    ) -> tuple[torch.Tensor, Any]:
        kwargs: dict[str, Any] = {
            "input_ids": ids,
            "attention_mask": mask,
            "use_cache": True,
            self._cache_arg: cache,
        }
        if self._position_ids:
            kwargs["position_ids"] = positions
        if self._logits_to_keep:
            kwargs["logits_to_keep"] = 1
        output = self._forward(**kwargs)
        new_cache = getattr(output, "cache", None)
        if new_cache is None:
            new_cache = output.past_key_values
        return output.logits[:, -1, :], new_cache


def _zero_padding(cache: Any, mask: torch.Tensor) -> None:
    """Zero K/V at padded positions.

    Padding rows attend to nothing; some attention kernels return NaN there,
    and a NaN value times a zero attention weight is still NaN in later steps.
    """
    if bool(mask.all()):
        return
    padding = ~mask.bool()[:, None, :, None]
    for layer in cache_layers(cache):
        layer.keys = layer.keys.masked_fill(padding, 0)
        layer.values = layer.values.masked_fill(padding, 0)


def cache_layers(cache: Any) -> list[Any]:
    """The per-layer K/V holders of a transformers ``DynamicCache``.

    Each has ``keys``/``values`` of shape (batch, kv_heads, length, head_dim);
    in-flight batching slices and pads them along batch and length.
    """
    layers = getattr(cache, "layers", None)
    if layers is None or any(getattr(layer, "keys", None) is None for layer in layers):
        raise TypeError(
            f"unsupported KV cache {type(cache).__name__}: in-flight batching needs "
            "transformers' DynamicCache with full-attention layers"
        )
    if any(getattr(layer, "is_sliding", False) for layer in layers):
        raise TypeError("sliding-window KV caches are not supported by in-flight batching")
    return list(layers)
