"""Pooled sentence embeddings over any Hugging Face encoder, one forward per batch.

Mean pooling + L2 normalisation here match sentence-transformers exactly:
padding is masked out of the mean, and the norm is clamped like
``torch.nn.functional.normalize``.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ds_triton.embedding.buckets import plan_groups
from ds_triton.loading import LoadedModel
from ds_triton.spec import EmbeddingSpec


@dataclass(frozen=True)
class EncodeResult:
    """Embeddings (n, dim) float32 and which inputs were cut to ``max_length``."""

    embeddings: np.ndarray
    truncated: np.ndarray


def checkpoint_max_length(checkpoint: Path, tokenizer: Any, config: Any) -> int:
    """The sequence limit a sentence-transformers user of this checkpoint gets."""
    st_config = checkpoint / "sentence_bert_config.json"
    if st_config.is_file():
        limit = json.loads(st_config.read_text()).get("max_seq_length")
        if limit:
            return int(limit)
    limits = [getattr(config, "max_position_embeddings", None), getattr(tokenizer, "model_max_length", None)]
    # Some checkpoints reserve positions (RoBERTa's padding offset): stay below them.
    offset = 2 if getattr(config, "model_type", "") in ("roberta", "xlm-roberta", "camembert") else 0
    usable = [int(v) - (offset if v == limits[0] else 0) for v in limits if v and v < 1_000_000]
    return min(usable) if usable else 512


class TextEncoder:
    """Tokenise a batch together, run one forward pass, pool, normalise."""

    def __init__(self, loaded: LoadedModel, options: EmbeddingSpec) -> None:
        self._loaded = loaded
        self._options = options
        self.max_length = options.max_length or checkpoint_max_length(
            loaded.checkpoint, loaded.tokenizer, loaded.config
        )
        tokenizer = loaded.tokenizer
        # Last-token pooling needs left padding so the last real token sits at -1.
        self._padding_side = "left" if options.pooling == "last_token" else tokenizer.padding_side
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
        # A tokenizer may return inputs its model does not take (a BERT-style
        # tokenizer's token_type_ids beside DistilBERT): pass only what forward accepts.
        accepted = inspect.signature(loaded.module.forward).parameters
        self._model_inputs = tuple(name for name in _MODEL_INPUTS if name in accepted)
        self.dimension = int(getattr(loaded.config, "hidden_size", 0) or loaded.config.d_model)

    def encode(self, texts: Sequence[str]) -> EncodeResult:
        """Embed ``texts``: tokenised together, then one forward per length group.

        Without length bucketing (or with texts of similar length) that is a single
        forward over the whole batch, padded to its longest text.
        """
        import torch

        batch = self._loaded.tokenizer(
            list(texts),
            padding=True,
            padding_side=self._padding_side,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        truncated = self._truncated(batch, texts)
        inputs = {k: v for k, v in batch.items() if k in self._model_inputs}
        lengths = inputs["attention_mask"].sum(dim=1)
        order = torch.argsort(lengths, stable=True)
        groups = (
            plan_groups(lengths[order].tolist(), FORWARD_OVERHEAD_TOKENS)
            if self._options.length_bucketing
            else [range(len(texts))]
        )
        pooled = torch.empty((len(texts), self.dimension), dtype=torch.float32)
        with torch.inference_mode():
            for group in groups:
                rows = order[group.start : group.stop]
                pooled[rows] = self._forward(inputs, rows, int(lengths[rows].max()))
        return EncodeResult(pooled.numpy(), truncated)

    def _forward(self, inputs: dict[str, Any], rows: Any, width: int) -> Any:
        """Pooled embeddings of ``rows``, cut to the ``width`` columns they need."""
        import torch

        # Padding sits on one side, so dropping the other side's columns is exact.
        cut = slice(-width, None) if self._padding_side == "left" else slice(0, width)
        group = {k: v[rows, cut].to(self._loaded.device) for k, v in inputs.items()}
        hidden = self._loaded.engine(**group).last_hidden_state
        pooled = self._pool(hidden, group["attention_mask"])
        if self._options.normalize:
            pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
        return pooled.float().cpu()

    def _pool(self, hidden: Any, mask: Any) -> Any:
        import torch

        if self._options.pooling == "cls":
            return hidden[:, 0]
        if self._options.pooling == "last_token":
            return hidden[:, -1]
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(dim=1) / torch.clamp(weights.sum(dim=1), min=1e-9)

    def _truncated(self, batch: Any, texts: Sequence[str]) -> np.ndarray:
        encodings = getattr(batch, "encodings", None)
        if encodings:
            return np.array([bool(e.overflowing) for e in encodings], dtype=bool)
        counts = [len(ids) for ids in self._loaded.tokenizer(list(texts))["input_ids"]]
        return np.array([c > self.max_length for c in counts], dtype=bool)


# The fixed cost of one forward pass, in token positions: measured on MiniLM on
# CPU, a 1-row forward costs about as much as 64 extra padded positions.
FORWARD_OVERHEAD_TOKENS = 64

# Only what encoders take; tokenizers may add e.g. ``overflow_to_sample_mapping``.
_MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
