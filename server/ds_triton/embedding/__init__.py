"""Embedding task: request validation and the pooled encoder (no Triton imports)."""
