"""Pooled sentence embeddings over any Hugging Face encoder.

A batch is tokenised once without padding, planned into forward passes by
length and token budget (``buckets.plan_forwards``), and each forward pads only
its own rows. Mean pooling + L2 normalisation match sentence-transformers
exactly: padding is masked out of the mean, and the norm is clamped like
``torch.nn.functional.normalize``.
"""

from __future__ import annotations

import inspect
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ds_triton.embedding.buckets import plan_forwards
from ds_triton.errors import ModelLoadError
from ds_triton.loading import LoadedModel
from ds_triton.profiling import StepTimeline
from ds_triton.spec import EmbeddingSpec


@dataclass(frozen=True)
class EncodeResult:
    """Embeddings (n, dim) float32 and which inputs were cut to ``max_length``."""

    embeddings: np.ndarray
    truncated: np.ndarray


@dataclass(frozen=True)
class TokenizedBatch:
    """Token ids of a batch, cut to ``max_length`` and not padded, and which rows were cut.

    ``features`` holds one list of ids per row for each input the model takes
    (``input_ids``, ``token_type_ids``, ...); attention masks are made when padding.
    """

    features: dict[str, list[list[int]]]
    truncated: np.ndarray

    def __len__(self) -> int:
        return len(self.truncated)

    @property
    def lengths(self) -> list[int]:
        return [len(ids) for ids in self.features["input_ids"]]

    def select(self, rows: Sequence[int]) -> TokenizedBatch:
        """The batch made of ``rows`` only, in that order."""
        return TokenizedBatch(
            {name: [column[i] for i in rows] for name, column in self.features.items()},
            self.truncated[list(rows)],
        )


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
    """Tokenise a batch once, run it as a few budget-bounded forwards, pool, normalise.

    With a ``timeline``, every forward pass appends one ``embed`` record (rows,
    padded tokens, forward time); the instance cannot see Triton's queue, so its
    ``queue_depth`` is 0 (Triton's ``nv_inference_pending_request_count`` has it).
    """

    def __init__(
        self, loaded: LoadedModel, options: EmbeddingSpec, timeline: StepTimeline | None = None
    ) -> None:
        self._loaded = loaded
        self._options = options
        self._timeline = timeline
        self.max_length = options.max_length or checkpoint_max_length(
            loaded.checkpoint, loaded.tokenizer, loaded.config
        )
        if options.max_tokens_per_forward < self.max_length:
            raise ModelLoadError(
                f"embedding.max_tokens_per_forward ({options.max_tokens_per_forward}) is below the "
                f"model's max_length ({self.max_length}): one text would not fit in a forward pass"
            )
        tokenizer = loaded.tokenizer
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
        self._pad_values = {
            "input_ids": int(tokenizer.pad_token_id),
            "token_type_ids": int(getattr(tokenizer, "pad_token_type_id", 0) or 0),
        }
        # A tokenizer may return inputs its model does not take (a BERT-style
        # tokenizer's token_type_ids beside DistilBERT): pass only what forward accepts.
        accepted = inspect.signature(loaded.module.forward).parameters
        self._model_inputs = tuple(name for name in _MODEL_INPUTS if name in accepted)
        # What the tokenizer must give per row; attention masks are made when padding.
        self._id_inputs = ("input_ids", *(n for n in self._model_inputs if n in _ID_INPUTS))
        self.dimension = int(getattr(loaded.config, "hidden_size", 0) or loaded.config.d_model)

    def encode(self, texts: Sequence[str]) -> EncodeResult:
        """Embed ``texts``: ``tokenize`` then ``embed``."""
        batch = self.tokenize(texts)
        return EncodeResult(self.embed(batch), batch.truncated)

    def tokenize(self, texts: Sequence[str]) -> TokenizedBatch:
        """Token ids cut to ``max_length`` (unpadded), and which texts that cut; one pass."""
        tokenizer = self._loaded.tokenizer
        options = {"truncation": True, "max_length": self.max_length, "return_attention_mask": False}
        if getattr(tokenizer, "is_fast", False):
            encoded = tokenizer(list(texts), **options)
            truncated = [bool(encoding.overflowing) for encoding in encoded.encodings]
            columns = {name: encoded[name] for name in self._id_inputs if name in encoded}
        else:
            # A Python tokenizer loops over texts anyway; called per text, it also
            # reports what it cut (batched, it cannot: its padding step rejects that).
            rows = [tokenizer(text, return_overflowing_tokens=True, **options) for text in texts]
            truncated = [bool(row.get("overflowing_tokens")) for row in rows]
            columns = {name: [row[name] for row in rows] for name in self._id_inputs if name in rows[0]}
        return TokenizedBatch(columns, np.array(truncated, dtype=bool))

    def embed(self, batch: TokenizedBatch) -> np.ndarray:
        """Embeddings (n, dim) float32 of a tokenised batch, in its row order.

        One forward per planned group; the pooled rows stay on the model's
        device until one copy to the host at the end (one device sync on GPU).
        """
        import torch

        if len(batch) == 0:
            return np.zeros((0, self.dimension), dtype=np.float32)
        groups = plan_forwards(
            batch.lengths,
            FORWARD_OVERHEAD_TOKENS,
            self._options.max_tokens_per_forward,
            by_length=self._options.length_bucketing,
        )
        with torch.inference_mode():
            pooled = torch.cat([self._forward(*self._padded(batch, rows)) for rows in groups])
            order = torch.tensor([row for rows in groups for row in rows], device=pooled.device)
            in_row_order = torch.empty_like(pooled).index_copy_(0, order, pooled)
            return in_row_order.float().cpu().numpy()

    def _padded(self, batch: TokenizedBatch, rows: Sequence[int]) -> tuple[dict[str, Any], Any]:
        """Model inputs and attention mask of ``rows``, padded to their longest, on the device."""
        import torch

        lengths = [len(batch.features["input_ids"][i]) for i in rows]
        width = max(lengths)
        mask = torch.from_numpy(_pad_right([[1] * n for n in lengths], width, 0))
        inputs = {
            name: torch.from_numpy(_pad_right([ids[i] for i in rows], width, self._pad_values.get(name, 0)))
            for name, ids in batch.features.items()
        }
        if "attention_mask" in self._model_inputs:
            inputs["attention_mask"] = mask
        device = self._loaded.device
        return {name: values.to(device) for name, values in inputs.items()}, mask.to(device)

    def _forward(self, inputs: dict[str, Any], mask: Any) -> Any:
        import torch

        started = time.perf_counter()
        hidden = self._loaded.engine(**inputs).last_hidden_state
        pooled = self._pool(hidden, mask)
        if self._options.normalize:
            pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
        if self._timeline is not None:
            if pooled.is_cuda:  # profiling only: time the kernels, not their launch
                torch.cuda.synchronize(pooled.device)
            ended = time.perf_counter()
            rows, width = mask.shape
            self._timeline.record("embed", int(rows), int(rows * width), ended, ended - started)
        return pooled

    def _pool(self, hidden: Any, mask: Any) -> Any:
        import torch

        if self._options.pooling == "cls":
            return hidden[:, 0]
        if self._options.pooling == "last_token":
            last = mask.sum(dim=1) - 1
            return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(dim=1) / torch.clamp(weights.sum(dim=1), min=1e-9)


def _pad_right(rows: Sequence[Sequence[int]], width: int, value: int) -> np.ndarray:
    """``rows`` as one int64 matrix of ``width`` columns, padded on the right with ``value``.

    Always on the right, whatever the tokenizer's ``padding_side``: real tokens then
    keep positions 0..n-1 in models with absolute position embeddings (BERT), so a
    padded row embeds exactly like the same text alone; pooling finds the last real
    token from the mask.
    """
    padded = np.full((len(rows), width), value, dtype=np.int64)
    for index, row in enumerate(rows):
        padded[index, : len(row)] = row
    return padded


# The fixed cost of one forward pass, in token positions: measured on MiniLM on
# CPU, a 1-row forward costs about as much as 64 extra padded positions.
FORWARD_OVERHEAD_TOKENS = 64

# Only what encoders take; tokenizers may add e.g. ``overflow_to_sample_mapping``.
_MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_ID_INPUTS = ("token_type_ids",)  # per-row inputs besides input_ids that come from the tokenizer
