"""How special tokens appear in generated text: ``skip_special_tokens``, ``spaces_between_special_tokens``.

``tokenizer.decode`` handles ``skip_special_tokens`` itself. It cannot do
``spaces_between_special_tokens: false``: transformers 5's tokenizers ignore the
argument that transformers 4's Python tokenizers took. So that case builds the
text the way those tokenizers (and vLLM's detokenizer) did: each run of ordinary
tokens is decoded on its own, each added token is written as it is, and the
pieces are joined without spaces. As in vLLM, the flag matters only when
special tokens are kept.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ds_triton.generation.detokenizer import fast_decoder

Decode = Callable[[Sequence[int]], str]


def text_decoder(
    tokenizer: Any, skip_special_tokens: bool = True, spaces_between_special_tokens: bool = True
) -> Decode:
    """A function from token ids to text that honours both options."""
    decode = fast_decoder(tokenizer, skip_special_tokens)
    if skip_special_tokens or spaces_between_special_tokens:
        return decode
    added = {token_id: token for token, token_id in tokenizer.get_added_vocab().items()}

    def decode_without_spaces(ids: Sequence[int]) -> str:
        pieces: list[str] = []
        run: list[int] = []
        for token_id in ids:
            token = added.get(token_id)
            if token is None:
                run.append(token_id)
                continue
            if run:
                pieces.append(decode(run))
                run = []
            pieces.append(token)
        if run:
            pieces.append(decode(run))
        return "".join(pieces)

    return decode_without_spaces
