"""One sequence's life: tokens in, text out, and when it ends.

Turns each sampled token into what the client gets: every token's new text
while streaming (vLLM sends one response per token), or a single response with
the full text at the end otherwise (with the prompt in front unless
``exclude_input_in_output``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

import torch

from ds_triton.generation.detokenizer import IncrementalDetokenizer
from ds_triton.generation.request import GenerationRequest
from ds_triton.generation.stopping import StopStringMatcher


class FinishReason(StrEnum):
    STOP = "stop"  # EOS token or a stop string
    LENGTH = "length"  # max_tokens reached
    CANCELLED = "cancelled"  # the client cancelled or went away
    ERROR = "error"  # the forward pass failed


@dataclass(frozen=True)
class GenerationOutput:
    """One response's content.

    Attributes:
        text: New text (streaming) or the whole text (non-streaming).
        num_input_tokens: Prompt tokens.
        num_output_tokens: Tokens this response covers (new ones while streaming).
        finish_reason: Set on the last response of the sequence.
    """

    text: str
    num_input_tokens: int
    num_output_tokens: int
    finish_reason: FinishReason | None = None

    @property
    def final(self) -> bool:
        return self.finish_reason is not None


class OutputSink(Protocol):
    """Where a sequence's responses go (the Triton adapter implements it).

    The engine thread calls these for every sequence at every step, so none may
    block: ``is_cancelled`` reads a flag that another thread keeps up to date,
    and ``send``/``fail`` only hand over to the thread that sends responses.
    """

    def is_cancelled(self) -> bool: ...

    def send(self, output: GenerationOutput) -> None: ...

    def fail(self, error: BaseException) -> None: ...


class Sequence:
    """A request being generated; fed one token per step by the engine."""

    def __init__(
        self,
        request: GenerationRequest,
        prompt_ids: list[int],
        sink: OutputSink,
        tokenizer: Any,
        eos_token_id: int | None,
    ) -> None:
        self.request = request
        self.params = request.sampling
        self.prompt_ids = prompt_ids
        self.sink = sink
        self.eos_token_id = eos_token_id
        self.generator = _generator(self.params.seed)
        self.arrival = time.monotonic()
        self.first_token_at: float | None = None
        self.token_ids: list[int] = []  # generated so far
        self.finish_reason: FinishReason | None = None
        self.prefilled = 0  # prompt tokens written into the KV cache
        # KV tokens this sequence may hold, reserved from the batch's token budget.
        self.reserved_tokens = len(prompt_ids) + self.params.max_tokens
        self.admitted = False  # holds a cache row and its reserved tokens
        self.released = False  # the engine gave its row and tokens back
        self._detokenizer = IncrementalDetokenizer(tokenizer, prompt_ids)
        self._stops = StopStringMatcher(self.params.stop)
        self._text: list[str] = []
        self._unsent_tokens = 0

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None

    @property
    def prompt_length(self) -> int:
        return len(self.prompt_ids)

    @property
    def num_generated(self) -> int:
        return len(self.token_ids)

    @property
    def eos_blocked(self) -> bool:
        """EOS may not end the sequence at its next token (``min_tokens``)."""
        return self._eos_blocked_at(self.num_generated)

    def _eos_blocked_at(self, generated_before: int) -> bool:
        return generated_before < self.params.min_tokens

    def accept(self, token_id: int) -> None:
        """Take the next sampled token; send what the client should see now."""
        if self.first_token_at is None:
            self.first_token_at = time.monotonic()
        self.token_ids.append(token_id)
        self._unsent_tokens += 1
        eos = token_id == self.eos_token_id and not self.params.ignore_eos and not self._eos_blocked_at(
            self.num_generated - 1
        )
        text = "" if eos else self._detokenizer.add(token_id)
        if eos or self.num_generated >= self.params.max_tokens:
            # Bytes held back as an incomplete character come out as U+FFFD, as HF decode does.
            text += self._detokenizer.flush()
        by_stop_string = False
        if self.num_generated <= self.params.min_tokens:
            delta = text  # stop strings count only after min_tokens (vLLM's rule)
        else:
            result = self._stops.feed(text)
            delta, by_stop_string = result.text, result.stopped
        if by_stop_string or eos:
            self.finish_reason = FinishReason.STOP
        elif self.num_generated >= self.params.max_tokens:
            self.finish_reason = FinishReason.LENGTH
        if self.finish_reason is not None and not by_stop_string:
            delta += self._stops.flush()  # held-back text turned out not to be a stop string
        self._emit(delta)

    def cancel(self) -> None:
        """End the sequence because the client cancelled; it gets a final response."""
        self.finish_reason = FinishReason.CANCELLED
        self._emit("")

    def _emit(self, delta: str) -> None:
        if self.request.stream:
            self.sink.send(self._output(delta, self._unsent_tokens))
            self._unsent_tokens = 0
            return
        self._text.append(delta)
        if self.finished:
            prefix = "" if self.request.exclude_input_in_output else self.request.prompt
            self.sink.send(self._output(prefix + "".join(self._text), self.num_generated))

    def _output(self, text: str, tokens: int) -> GenerationOutput:
        return GenerationOutput(text, len(self.prompt_ids), tokens, self.finish_reason)


def _generator(seed: int | None) -> torch.Generator | None:
    if seed is None:
        return None
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator
