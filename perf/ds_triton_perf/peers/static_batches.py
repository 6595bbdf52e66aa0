"""The generation baseline: in-process *static* batches, no server.

Groups of ``batch_size`` requests run through Hugging Face ``generate`` on the
model that ``ds_triton.loading.load_model`` loads for the server. A static
batch runs until its longest member is done, so only each request's own
``max_tokens`` count as useful tokens: that is the waste in-flight batching
is meant to remove.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ds_triton.devices import Placement, available_cores
from ds_triton.loading import load_model
from ds_triton.spec import ModelSpec


@dataclass(frozen=True)
class StaticBatchResult:
    """Throughput of static batches: useful (requested) tokens per second."""

    batch_size: int
    requests: int
    useful_tokens: int
    generated_tokens: int
    seconds: float

    @property
    def tokens_per_s(self) -> float:
        return self.useful_tokens / self.seconds if self.seconds else 0.0

    def to_row(self) -> dict[str, Any]:
        return {"batch_size": self.batch_size, "requests": self.requests,
                "useful_tokens": self.useful_tokens, "generated_tokens": self.generated_tokens,
                "seconds": round(self.seconds, 3), "tokens_per_s": round(self.tokens_per_s, 2)}


def measure_static_batches(model_dir: Path, prompts: Sequence[str], max_tokens: Sequence[int],
                           batch_size: int = 16, version: str = "1") -> StaticBatchResult:
    """Generate every (prompt, max_tokens) request in static batches of ``batch_size``."""
    import torch

    version_dir = model_dir / version
    spec = ModelSpec.load(version_dir)
    loaded = load_model(spec, version_dir, Placement(device="cpu", threads=available_cores()))
    tokenizer = loaded.tokenizer
    tokenizer.padding_side = "left"  # generation continues from the last column
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    requests = list(zip(prompts, max_tokens, strict=True))
    useful = generated = 0
    _generate(loaded.module, tokenizer, [requests[0][0]], 2, pad_id, torch)  # warm-up
    start = time.perf_counter()
    for first in range(0, len(requests), batch_size):
        group = requests[first:first + batch_size]
        longest = max(tokens for _, tokens in group)
        _generate(loaded.module, tokenizer, [prompt for prompt, _ in group], longest, pad_id, torch)
        useful += sum(tokens for _, tokens in group)
        generated += longest * len(group)
    return StaticBatchResult(batch_size, len(requests), useful, generated, time.perf_counter() - start)


def _generate(module: Any, tokenizer: Any, prompts: list[str], new_tokens: int, pad_id: int,
              torch: Any) -> None:
    batch = tokenizer(prompts, return_tensors="pt", padding=True)
    with torch.inference_mode():
        # min_new_tokens = max_new_tokens: like ignore_eos, every row runs the full length.
        module.generate(**batch, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                        do_sample=False, pad_token_id=pad_id)
