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
    """Where a sequence's responses go (the Triton adapter implements it)."""

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
        self.num_generated = 0
        self.finish_reason: FinishReason | None = None
        self.released = False  # the engine gave its capacity back
        self._detokenizer = IncrementalDetokenizer(tokenizer, prompt_ids)
        self._stops = StopStringMatcher(self.params.stop)
        self._text: list[str] = []
        self._unsent_tokens = 0

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None

    @property
    def eos_blocked(self) -> bool:
        """EOS may not end the sequence yet (``min_tokens``)."""
        return self.num_generated < self.params.min_tokens

    def accept(self, token_id: int) -> None:
        """Take the next sampled token; send what the client should see now."""
        if self.first_token_at is None:
            self.first_token_at = time.monotonic()
        self.num_generated += 1
        self._unsent_tokens += 1
        delta = ""
        by_stop_string = False
        if token_id == self.eos_token_id and not self.params.ignore_eos and not self.eos_blocked:
            self.finish_reason = FinishReason.STOP
        else:
            text = self._detokenizer.add(token_id)
            if self.num_generated <= self.params.min_tokens:
                delta = text  # stop strings count only after min_tokens (vLLM's rule)
            else:
                result = self._stops.feed(text)
                delta, by_stop_string = result.text, result.stopped
                if by_stop_string:
                    self.finish_reason = FinishReason.STOP
        if self.finish_reason is None and self.num_generated >= self.params.max_tokens:
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
