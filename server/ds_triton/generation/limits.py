"""How long a sequence a causal-LM checkpoint takes (no torch: the server and the gateway read it)."""

from __future__ import annotations

from typing import Any


def context_length(config: Any, tokenizer: Any) -> int:
    """Longest sequence the model takes: its position table, else the tokenizer's limit."""
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    limit = getattr(tokenizer, "model_max_length", 0)
    return int(limit) if 0 < limit < 1_000_000 else 2048
