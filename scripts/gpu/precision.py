"""The GPU check's comparisons: one model loaded several ways, each against HF fp32 on the same device.

Shared by the ``gpu``-marked tests (tolerances) and ``bench.py`` (the table):

- embeddings (MiniLM): max-abs difference of the pooled, normalised vectors;
- generation (the tiny Llama): greedy-token agreement, the share of positions
  where a variant's greedy token equals HF fp32 ``generate``'s.

The DeepSpeed variants load through ``ds_triton.loading.load_model``, the
function every served instance uses, so "DeepSpeed fp16 with injection" is
exactly what ``kernel_inject`` gives a ``KIND_GPU`` instance.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ds_triton.devices import Placement
from ds_triton.embedding.encoder import TextEncoder
from ds_triton.generation.model_runner import ModelRunner, pad_token_id
from ds_triton.generation.running_batch import RunningBatch
from ds_triton.loading import LoadedModel, load_model, torch_dtype
from ds_triton.spec import ModelSpec

ROOT = Path(__file__).resolve().parents[2]
EMBEDDING_DIR = ROOT / "model_repository" / "text_embedding" / "1"
GENERATION_DIR = ROOT / "model_repository" / "text_generation" / "1"

EMBED_TEXTS = [
    "A man is eating food.",
    "The new movie is awesome, and the popcorn was fine too.",
    "DeepSpeed replaces transformer layers with fused CUDA kernels.",
    "Triton Inference Server batches requests from many clients.",
    "short",
    "Ünïcödé, emoji 🚀 and 中文 in one sentence.",
    " ".join(["a much longer text that repeats itself"] * 12),
    "How many tokens does this sentence have once it is split into word pieces?",
] * 4
GEN_PROMPTS = [
    "Hello",
    "The quick brown fox jumps over the lazy dog",
    "Tensor parallel ranks meet in their all-reduces",
    "a b c",
]
GEN_TOKENS = 32

# Tolerances of the GPU tests (bf16 keeps 8 bits of mantissa, fp16 11).
EMBEDDING_MAX_ABS = {"fp16": 1e-2, "bf16": 3e-2}
GREEDY_AGREEMENT = 0.95


def spec_for(version_dir: Path, *, dtype: str, kernel_inject: str, device: str) -> ModelSpec:
    """The shipped model's spec with another dtype, injection policy and device."""
    base = ModelSpec.load(version_dir)
    deployment = dataclasses.replace(base.deployment, device="gpu" if device.startswith("cuda") else "cpu")
    return dataclasses.replace(base, dtype=dtype, kernel_inject=kernel_inject, deployment=deployment)


def placement(device: str) -> Placement:
    return Placement(device, 1 if device.startswith("cuda") else 2)


# -- embeddings ----------------------------------------------------------------


def hf_embedding_model(device: str, dtype: str) -> LoadedModel:
    """Plain Hugging Face MiniLM (no DeepSpeed), as ``TextEncoder`` takes it."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    spec = spec_for(EMBEDDING_DIR, dtype=dtype, kernel_inject="off", device=device)
    checkpoint = spec.resolve_checkpoint(EMBEDDING_DIR)
    module = AutoModel.from_pretrained(checkpoint, dtype=torch_dtype(dtype)).eval().to(device)
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    config = AutoConfig.from_pretrained(checkpoint)
    return LoadedModel(module, module, tokenizer, config, checkpoint, device, False)


def ds_embedding_model(device: str, dtype: str, kernel_inject: str) -> LoadedModel:
    """MiniLM through ``load_model`` (DeepSpeed ``init_inference``), as a served instance loads it."""
    spec = spec_for(EMBEDDING_DIR, dtype=dtype, kernel_inject=kernel_inject, device=device)
    return load_model(spec, EMBEDDING_DIR, placement(device))


def embed(loaded: LoadedModel, texts: Sequence[str] = EMBED_TEXTS) -> np.ndarray:
    spec = ModelSpec.load(EMBEDDING_DIR)
    return np.asarray(TextEncoder(loaded, spec.embedding_options).encode(texts).embeddings, dtype=np.float32)


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a.astype(np.float32) - b.astype(np.float32))))


# -- generation ----------------------------------------------------------------


def generation_spec(device: str, dtype: str) -> ModelSpec:
    return spec_for(GENERATION_DIR, dtype=dtype, kernel_inject="off", device=device)


def hf_generation_model(device: str, dtype: str) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    checkpoint = generation_spec(device, dtype).resolve_checkpoint(GENERATION_DIR)
    module = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch_dtype(dtype)).eval().to(device)
    return module, AutoTokenizer.from_pretrained(checkpoint)


def hf_greedy_tokens(module: Any, tokenizer: Any, prompts: Sequence[str] = GEN_PROMPTS) -> list[list[int]]:
    """HF ``generate`` greedy continuations, ``GEN_TOKENS`` each (EOS ignored), one prompt at a time."""
    import torch

    results = []
    for prompt in prompts:
        ids = torch.tensor([tokenizer(prompt)["input_ids"]], device=module.device)
        with torch.inference_mode():
            out = module.generate(
                ids, attention_mask=torch.ones_like(ids), max_new_tokens=GEN_TOKENS,
                min_new_tokens=GEN_TOKENS, do_sample=False,
            )
        results.append(out[0, ids.shape[1]:].tolist())
    return results


def ds_generation_model(device: str, dtype: str) -> LoadedModel:
    return load_model(generation_spec(device, dtype), GENERATION_DIR, placement(device))


def served_runner_greedy_tokens(loaded: LoadedModel, prompts: Sequence[str] = GEN_PROMPTS) -> list[list[int]]:
    """Greedy tokens through the serving path's runner and slot KV cache, all prompts in one batch.

    Prompts are prefilled one by one into their own cache rows, then decoded
    together, every row at its own position (the in-flight batching masks).
    """
    import torch

    tokenizer = loaded.tokenizer
    runner = ModelRunner(loaded.engine, loaded.module, loaded.device, pad_token_id(tokenizer))
    batch: RunningBatch[object] = RunningBatch(runner, len(prompts), 128)
    owners = [object() for _ in prompts]
    tokens: list[list[int]] = [[] for _ in prompts]
    with torch.inference_mode():
        for index, (owner, prompt) in enumerate(zip(owners, prompts, strict=True)):
            batch.acquire(owner)
            logits = batch.prefill([owner], [tokenizer(prompt)["input_ids"]], 0)
            first = int(logits.float().argmax(-1)[0])
            tokens[index].append(first)
            batch.start_running(owner, first)
        order = batch.running_sequences()
        for _ in range(GEN_TOKENS - 1):
            chosen = batch.decode().float().argmax(-1)
            batch.advance(chosen)
            for owner, token in zip(order, chosen.tolist(), strict=True):
                tokens[owners.index(owner)].append(int(token))
    return tokens


def agreement(reference: Sequence[Sequence[int]], candidate: Sequence[Sequence[int]]) -> float:
    """Share of positions where ``candidate``'s token equals ``reference``'s."""
    total = sum(len(ref) for ref in reference)
    rows = zip(reference, candidate, strict=True)
    same = sum(r == c for ref, cand in rows for r, c in zip(ref, cand, strict=False))
    return same / total if total else 1.0


def continuation_text(tokenizer: Any, prompt: str, tokens: Sequence[int]) -> str:
    """The text ``tokens`` add after ``prompt`` (how the server's exclude_input_in_output reads)."""
    prompt_ids = tokenizer(prompt)["input_ids"]
    full = tokenizer.decode([*prompt_ids, *tokens], skip_special_tokens=True)
    return full[len(tokenizer.decode(prompt_ids, skip_special_tokens=True)) :]


def injected_layers(loaded: LoadedModel) -> int:
    """DeepSpeed inference layers in the model (0 when injection did not happen)."""
    return sum(1 for m in loaded.module.modules() if type(m).__name__.startswith("DeepSpeed"))


