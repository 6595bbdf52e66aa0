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
from ds_triton.generation.logits_processors import RowPlan
from ds_triton.generation.logprobs import LogprobEntry, LogprobsRecorder, TokenLogprobs, TokenTexts
from ds_triton.generation.request import GenerationRequest
from ds_triton.generation.special_tokens import text_decoder
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
        logprobs: One entry per token this response covers (None: not asked for).
        cumulative_logprob: Sum of the log-probabilities of every token so far.
        prompt_logprobs: The prompt's entries, first one None (first response only).
    """

    text: str
    num_input_tokens: int
    num_output_tokens: int
    finish_reason: FinishReason | None = None
    logprobs: tuple[LogprobEntry, ...] | None = None
    cumulative_logprob: float | None = None
    prompt_logprobs: tuple[LogprobEntry | None, ...] | None = None

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
        plan: RowPlan | None = None,
        token_texts: TokenTexts | None = None,
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
        self.plan = plan or RowPlan()  # what the sampler does for this sequence
        params = self.params
        decode = text_decoder(tokenizer, params.skip_special_tokens, params.spaces_between_special_tokens)
        self._detokenizer = IncrementalDetokenizer(tokenizer, prompt_ids, decode)
        self._stops = StopStringMatcher(params.stop, params.include_stop_str_in_output)
        self._stop_tokens = set(params.stop_token_ids)
        if eos_token_id is not None and not params.ignore_eos:
            self._stop_tokens.add(eos_token_id)
        self._logprobs = LogprobsRecorder(
            token_texts,
            listed=request.return_logprobs and params.logprobs is not None,
            cumulative=request.return_cumulative_logprob,
        )
        self._prompt_logprobs: tuple[LogprobEntry | None, ...] | None = None
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

    def _stop_blocked_at(self, generated_before: int) -> bool:
        """EOS and stop tokens cannot end the sequence yet (``min_tokens``)."""
        return generated_before < self.params.min_tokens

    def add_prompt_logprobs(self, entries: list[LogprobEntry], first: bool) -> None:
        """Log-probabilities of the next prompt tokens (a prefill chunk's); sent with the first
        response. ``first``: the chunk starts the prompt, whose first token has none (null)."""
        start: tuple[LogprobEntry | None, ...] = (None,) if first else self._prompt_logprobs or ()
        self._prompt_logprobs = (*start, *entries)

    def accept(self, token_id: int, logprobs: TokenLogprobs | None = None) -> None:
        """Take the next sampled token (and its log-probabilities); send what the client sees now."""
        if self.first_token_at is None:
            self.first_token_at = time.monotonic()
        self.plan.observe(token_id)
        self.token_ids.append(token_id)
        self._unsent_tokens += 1
        # EOS (unless ignore_eos) and stop_token_ids end the sequence; their own text
        # is returned only with include_stop_str_in_output (vLLM's rule).
        stop_token = token_id in self._stop_tokens and not self._stop_blocked_at(self.num_generated - 1)
        keep_text = not stop_token or self.params.include_stop_str_in_output
        text = self._detokenizer.add(token_id) if keep_text else ""
        if stop_token or self.num_generated >= self.params.max_tokens:
            # Bytes held back as an incomplete character come out as U+FFFD, as HF decode does.
            text += self._detokenizer.flush()
        by_stop_string = False
        if stop_token:
            delta = self._stops.flush() + text  # held-back text turned out not to be a stop string
        elif self.num_generated <= self.params.min_tokens:
            delta = text  # stop strings count only after min_tokens (vLLM's rule)
        else:
            result = self._stops.feed(text)
            delta, by_stop_string = result.text, result.stopped
        if by_stop_string or stop_token:
            self.finish_reason = FinishReason.STOP
        elif self.num_generated >= self.params.max_tokens:
            self.finish_reason = FinishReason.LENGTH
        if self.finish_reason is not None and not (by_stop_string or stop_token):
            delta += self._stops.flush()  # held-back text turned out not to be a stop string
        self._logprobs.record(logprobs, delta)
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
        logprobs, cumulative = self._logprobs.take()
        prompt_logprobs, self._prompt_logprobs = self._prompt_logprobs, None
        return GenerationOutput(
            text, len(self.prompt_ids), tokens, self.finish_reason, logprobs, cumulative, prompt_logprobs
        )


def _generator(seed: int | None) -> torch.Generator | None:
    if seed is None:
        return None
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator
