"""What the gateway does with a model's own tokenizer: chat prompts and token counts.

Why the gateway loads the checkpoint's tokenizer rather than asking the server:
a chat request has to become one prompt before Triton sees it, with the chat
template that ships in the tokenizer's files, so the gateway needs those files
anyway. With them, embedding token counts come from the same tokenizer and the
same truncation limit the embedding model applies (``checkpoint_max_length``),
so ``usage.prompt_tokens`` equals what the model encoded, with no change to the
embedding model's tensors (that Triton clients and perf_analyzer rely on).
Generation counts still come from the model's ``num_input_tokens`` and
``num_output_tokens`` outputs.

Checkpoints without a chat template get ``PLAIN_TEMPLATE``: one line per
message, ``System: ...``, ``User: ...``, ``Assistant: ...``, then ``Assistant:``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ds_triton.embedding.encoder import checkpoint_max_length
from ds_triton.generation.limits import context_length
from ds_triton.spec import ModelSpec

#: Roles a chat message may have, and how the plain template writes them.
ROLE_NAMES = {"system": "System", "developer": "System", "user": "User", "assistant": "Assistant"}
PLAIN_TEMPLATE = "one '<Role>: <content>' line per message (System, User, Assistant), then 'Assistant:'"


class ChatTemplateError(ValueError):
    """The checkpoint's chat template refused the messages (its own message says why)."""


@dataclass(frozen=True)
class Message:
    role: str  # a key of ROLE_NAMES
    content: str


@dataclass
class ModelText:
    """A model's tokenizer and the limits that go with it.

    Attributes:
        tokenizer: The checkpoint's Hugging Face tokenizer.
        spec: The model's spec.
        max_length: Embedding models: tokens a text is cut to, as the model cuts it.
        context: Generation models: the context length (prompt plus output).
    """

    tokenizer: Any
    spec: ModelSpec
    max_length: int | None = None
    context: int | None = None

    @classmethod
    def load(cls, spec: ModelSpec, version_dir: Path) -> ModelText:
        """Read the tokenizer (and config) of ``spec``'s checkpoint; no weights are loaded."""
        from transformers import AutoConfig, AutoTokenizer

        checkpoint = spec.resolve_checkpoint(version_dir)
        tokenizer = AutoTokenizer.from_pretrained(str(checkpoint), local_files_only=True)
        config = AutoConfig.from_pretrained(str(checkpoint), local_files_only=True)
        if spec.task == "embedding":
            limit = spec.embedding_options.max_length or checkpoint_max_length(checkpoint, tokenizer, config)
            return cls(tokenizer, spec, max_length=limit)
        return cls(tokenizer, spec, context=context_length(config, tokenizer))

    # --- embeddings --------------------------------------------------------------------

    def count_embedding_tokens(self, texts: Sequence[str]) -> int:
        """Tokens the embedding model encodes for ``texts`` (each cut to ``max_length``)."""
        encoded = self.tokenizer(
            list(texts), truncation=True, max_length=self.max_length, return_attention_mask=False,
            return_token_type_ids=False,
        )  # fmt: skip
        return sum(len(ids) for ids in encoded["input_ids"])

    # --- generation --------------------------------------------------------------------

    def prompt_tokens(self, prompt: str) -> int:
        """Tokens of ``prompt`` as the generation model tokenizes it."""
        return len(self.tokenizer(prompt)["input_ids"])

    def default_max_tokens(self, prompt: str) -> int:
        """Chat's default output budget: what the model's limits leave after the prompt."""
        options = self.spec.generation_options
        left = (self.context or options.max_tokens_limit) - self.prompt_tokens(prompt)
        return max(1, min(options.max_tokens_limit, left))

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    def chat_prompt(self, messages: Sequence[Message]) -> str:
        """The prompt for a conversation, ending where the assistant's reply starts.

        Raises:
            ChatTemplateError: The template rejects the conversation.
        """
        if not self.has_chat_template:
            lines = [f"{ROLE_NAMES[m.role]}: {m.content}" for m in messages]
            return "\n".join([*lines, "Assistant:"])
        plain = [
            {"role": "system" if m.role == "developer" else m.role, "content": m.content} for m in messages
        ]
        try:
            prompt = self.tokenizer.apply_chat_template(plain, tokenize=False, add_generation_prompt=True)
        except Exception as exc:  # jinja's TemplateError, or the template's raise_exception()
            raise ChatTemplateError(f"the model's chat template refused the messages: {exc}") from exc
        return self._without_duplicate_bos(str(prompt))

    def _without_duplicate_bos(self, prompt: str) -> str:
        """Drop the template's BOS when the model's tokenizer adds one itself (no doubled BOS)."""
        bos, bos_id = self.tokenizer.bos_token, self.tokenizer.bos_token_id
        if not bos or bos_id is None or not prompt.startswith(bos):
            return prompt
        adds_bos = self.tokenizer("x")["input_ids"][:1] == [bos_id]
        return prompt[len(bos) :] if adds_bos else prompt
