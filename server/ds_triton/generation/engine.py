"""In-flight (continuous) batching: one thread, at most one prefill and one decode forward per step.

Each step of the loop:

1. sequences whose client cancelled leave (a flag read, kept current by
   another thread, so a slot frees at the next step without a round trip);
2. waiting requests are admitted in arrival order while a cache row is free
   and their KV tokens fit the token budget (``scheduler``);
3. ONE prefill forward writes the next chunk of waiting prompts into their
   cache rows (at most ``max_prefill_tokens``, so a long prompt is spread over
   several steps and never stalls the running streams for its whole length);
4. ONE decode forward advances every running sequence by a token, reading the
   preallocated slot KV cache in place;
5. the sampled tokens reach the host in one transfer on a GPU (on a CPU the
   first tokens of new prompts are handed over before the decode forward, see
   ``_forward``); sequences that finished (EOS, stop string, max_tokens) leave
   without stalling the others, and prompts prefilled this step decode from
   the next one.

Requests beyond ``max_concurrent_sequences`` rows (or the token budget) wait in
a queue of at most ``max_queued_requests``; beyond that ``submit`` raises
``CapacityError`` (UNAVAILABLE), so load is shed with a clear error instead of
memory growth.

Failures stay as small as they can: a failed prefill fails the sequences it
was prefilling, a failed decode the running ones, a failure while delivering
one sequence's token that sequence; anything else fails what is in flight and
the loop goes on. Metrics and the step timeline are recorded outside all of
that and can fail nothing.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from ds_triton.errors import CapacityError, InferenceError, InvalidInputError
from ds_triton.generation.logits_processors import plan_row
from ds_triton.generation.logprobs import TokenLogprobs, TokenTexts, prompt_logprobs
from ds_triton.generation.metrics import CountingMetrics, GenerationMetrics
from ds_triton.generation.model_runner import ModelRunner
from ds_triton.generation.request import GenerationRequest
from ds_triton.generation.running_batch import RunningBatch
from ds_triton.generation.sampling import SampledTokens, Sampler
from ds_triton.generation.scheduler import PrefillChunk, TokenBudget, plan_prefill
from ds_triton.generation.sequence import FinishReason, OutputSink, Sequence
from ds_triton.profiling import Phase, StepTimeline
from ds_triton.spec import GenerationSpec
from ds_triton_interface import OVER_CAPACITY, SHUTTING_DOWN, TEXT_INPUT, UNLOADED

LOG = logging.getLogger(__name__)


@dataclass
class _StepWork:
    """What one step ran, for delivery, metrics and the timeline."""

    prefill: PrefillChunk[Sequence] | None = None
    first_tokens: list[Sequence] = field(default_factory=list)  # prompts completed this step
    decoded: list[Sequence] = field(default_factory=list)  # rows of the decode forward
    forward_seconds: float = 0.0
    ended: float = 0.0


class GenerationEngine:
    """Owns the running batch; ``submit`` from any thread, decoding on its own thread."""

    def __init__(
        self,
        runner: ModelRunner,
        tokenizer: Any,
        options: GenerationSpec,
        max_positions: int,
        eos_token_id: int | None,
        metrics: GenerationMetrics | None = None,
        timeline: StepTimeline | None = None,
        vocab_size: int | None = None,
    ) -> None:
        """``vocab_size``: the width of the model's logits (default: the tokenizer's size)."""
        self.runner = runner
        self.tokenizer = tokenizer  # prompts, in the thread that calls ``submit``
        # The engine thread decodes with its own copy: tokenizers are not thread-safe.
        self._decoding_tokenizer = copy.deepcopy(tokenizer)
        self.options = options
        self.max_positions = max_positions
        self.eos_token_id = eos_token_id
        self.metrics: GenerationMetrics = metrics or CountingMetrics()
        self.timeline = timeline
        self.row_tokens = min(max_positions, options.max_prompt_tokens + options.max_tokens_limit)
        self._batch: RunningBatch[Sequence] = RunningBatch(
            runner, options.max_concurrent_sequences, self.row_tokens
        )
        self._budget = TokenBudget(options.max_batch_total_tokens)
        self._condition = threading.Condition()
        self._waiting: deque[Sequence] = deque()  # guarded by _condition
        self._in_flight = 0  # waiting + admitted, guarded by _condition
        self._prefilling: list[Sequence] = []  # engine thread only, oldest first
        self._thread: threading.Thread | None = None
        self._accepting = True  # guarded by _condition
        self._stopping = False  # guarded by _condition
        self._metric_failures = 0
        self.vocab_size = vocab_size or len(tokenizer)
        self._sampler = Sampler(self.vocab_size, options.max_concurrent_sequences, options.logprobs_mode)
        self._token_texts = TokenTexts(self._decoding_tokenizer)  # engine thread only
        # See _forward: on a CPU the host has the first tokens without waiting for anything.
        self.early_first_tokens = runner.device.type == "cpu"

    # -- any thread -------------------------------------------------------------

    def submit(self, request: GenerationRequest, sink: OutputSink) -> None:
        """Queue ``request``; its responses go to ``sink``.

        Raises:
            InvalidInputError: The prompt is too long for the configured limits.
            CapacityError: The queue is full, or the model is shutting down.
        """
        prompt_ids = self.tokenize(request)
        plan = plan_row(
            request.sampling, prompt_ids, self.tokenizer, self.vocab_size, self.eos_token_id,
            logprobs=request.return_logprobs, cumulative_logprob=request.return_cumulative_logprob,
        )  # fmt: skip
        sequence = Sequence(
            request, prompt_ids, sink, self._decoding_tokenizer, self.eos_token_id, plan, self._token_texts
        )
        limit = self.options.max_concurrent_sequences + self.options.max_queued_requests
        with self._condition:
            if not self._accepting:
                raise CapacityError(f"{SHUTTING_DOWN}; retry on another instance")
            if self._in_flight >= limit:
                raise CapacityError(
                    f"{OVER_CAPACITY}: {self.options.max_concurrent_sequences} sequences run and "
                    f"{self.options.max_queued_requests} may wait; retry later"
                )
            self._in_flight += 1
            self._waiting.append(sequence)
            self._condition.notify_all()

    def tokenize(self, request: GenerationRequest) -> list[int]:
        """Prompt token ids, or ``InvalidInputError`` when over a length limit."""
        ids: list[int] = list(self.tokenizer(request.prompt)["input_ids"])
        if not ids:
            raise InvalidInputError(f"input '{TEXT_INPUT}' has no tokens")
        if len(ids) > self.options.max_prompt_tokens:
            raise InvalidInputError(
                f"input '{TEXT_INPUT}' is {len(ids)} tokens long; this model accepts at most "
                f"{self.options.max_prompt_tokens} prompt tokens"
            )
        if len(ids) + request.sampling.max_tokens > self.max_positions:
            raise InvalidInputError(
                f"sampling_parameters.max_tokens ({request.sampling.max_tokens}) plus the prompt "
                f"({len(ids)} tokens) exceeds the model's context of {self.max_positions} tokens"
            )
        return ids

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="generation-engine")
        self._thread.start()

    def drain(self, timeout: float) -> bool:
        """Refuse new requests and wait up to ``timeout`` s for those in flight to finish.

        Returns True when nothing is left in flight.
        """
        deadline = time.monotonic() + timeout
        with self._condition:
            self._accepting = False
            while self._in_flight > 0:
                left = deadline - time.monotonic()
                if left <= 0 or self._thread is None:
                    break
                self._condition.wait(min(left, 0.5))
            return self._in_flight == 0

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop the loop; sequences still in flight get an UNAVAILABLE error.

        The engine thread fails what is left before it exits. When it does not
        exit within ``timeout`` (a forward pass still running), its state is left
        alone and it cleans up when that pass returns. Returns True once stopped.
        """
        with self._condition:
            self._accepting = False
            self._stopping = True
            self._condition.notify_all()
        thread, self._thread = self._thread, None
        if thread is None:  # never started: no other thread owns the state
            self._fail_leftovers()
            return True
        thread.join(timeout)
        if thread.is_alive():
            LOG.warning("the generation engine is still in a forward pass after %.0f s", timeout)
            self._thread = thread
            return False
        return True

    @property
    def in_flight(self) -> int:
        with self._condition:
            return self._in_flight

    @property
    def reserved_tokens(self) -> int:
        return self._budget.reserved

    # -- engine thread ----------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self._condition:
                while not self._stopping and not self._has_work():
                    self._condition.wait()
                if self._stopping:
                    break
            try:
                self.step()
            except Exception as exc:  # the loop must survive, or every request would hang
                LOG.exception("generation engine step failed outside the forward passes")
                self._fail_everything(_inference_error("generation step", exc))
        self._fail_leftovers()

    def _has_work(self) -> bool:
        return bool(self._waiting or self._prefilling or self._batch.running)

    @torch.inference_mode()
    def step(self) -> None:
        """One scheduling step (public so tests can drive the engine without a thread)."""
        self._drop_cancelled()
        self._admit()
        work = _StepWork()
        self._forward(work)
        for sequence in work.first_tokens:  # prefilled: they decode from the next step on
            if not sequence.finished:
                self._prefilling.remove(sequence)
                self._batch.start_running(sequence, sequence.token_ids[-1])
        # Those that ended on their first token (max_tokens 1, a stop token) are still in
        # _prefilling, where this finds them: they give back their row and token budget.
        self._retire_finished()
        self._report(work)

    def _forward(self, work: _StepWork) -> None:
        """Run this step's prefill and decode forwards and hand their tokens to the sequences.

        On a GPU the tokens of both forwards reach the host in one copy at the end,
        the step's only sync (the log-probabilities asked for, computed before it,
        follow without waiting). On a CPU a copy costs nothing, so the first tokens
        of new prompts are handed over before the decode forward: time to first
        token does not include it.
        """
        pending: list[tuple[list[Sequence], SampledTokens]] = []
        work.prefill = plan_prefill(self._prefilling, self.options.max_prefill_tokens)
        if work.prefill is not None:
            first_tokens = self._prefill(work, work.prefill)
            if first_tokens is not None:
                if self.early_first_tokens:
                    self._deliver(
                        work.first_tokens, first_tokens.tokens.tolist(), first_tokens.host_logprobs()
                    )
                else:
                    pending.append((work.first_tokens, first_tokens))
        running = self._batch.running_sequences()
        if running:
            next_tokens = self._decode(work, running)
            if next_tokens is not None:
                pending.append((running, next_tokens))
                work.decoded = running
        work.ended = time.perf_counter()
        if pending:
            # The step's one device-to-host transfer (its only sync on a GPU).
            host = torch.cat([sampled.tokens for _, sampled in pending]).tolist()
            self._deliver(
                [s for sequences, _ in pending for s in sequences],
                host,
                [value for _, sampled in pending for value in sampled.host_logprobs()],
            )

    def _prefill(self, work: _StepWork, chunk: PrefillChunk[Sequence]) -> SampledTokens | None:
        """Prefill ``chunk``; the first tokens of the sequences whose prompt it completes."""
        sequences = list(chunk.sequences)
        pieces = [
            s.prompt_ids[chunk.start : chunk.start + n]
            for s, n in zip(sequences, chunk.lengths, strict=True)
        ]
        done = [i for i in range(len(sequences)) if chunk.completes(i)]
        scored = [i for i, s in enumerate(sequences) if s.params.prompt_logprobs is not None]

        def run() -> SampledTokens | None:
            logits = self._batch.prefill(
                sequences, pieces, chunk.start, every_position=bool(scored), logits=bool(done)
            )
            if scored and logits is not None:
                self._score_prompts(chunk, scored, logits)
                last = torch.tensor([len(p) - 1 for p in pieces], device=logits.device)
                logits = logits[torch.arange(len(pieces), device=logits.device), last]
            for sequence, length in zip(sequences, chunk.lengths, strict=True):
                sequence.prefilled += length
            if not done or logits is None:
                return None
            if len(done) < len(sequences):  # some prompts continue in the next chunk
                index = self.runner.to_device(torch.tensor(done, dtype=torch.long))
                logits = logits.index_select(0, index)
            completed = [sequences[i] for i in done]
            sampled = self._sample(logits, completed)
            work.first_tokens = completed
            return sampled

        return self._guarded(work, "prefill", sequences, run)

    def _score_prompts(self, chunk: PrefillChunk[Sequence], rows: list[int], logits: torch.Tensor) -> None:
        """``prompt_logprobs`` of chunk rows ``rows``: the logits at chunk position p score
        prompt token ``start + p + 1`` (a host copy per scored row: the scoring path)."""
        start = chunk.start
        for row in rows:
            sequence = chunk.sequences[row]
            targets = sequence.prompt_ids[start : start + chunk.lengths[row] + 1]
            values = prompt_logprobs(logits[row], targets, sequence.params.prompt_logprobs or 0)
            sequence.add_prompt_logprobs(self._token_texts.entries(values), first=start == 0)

    def _decode(self, work: _StepWork, running: list[Sequence]) -> SampledTokens | None:
        def run() -> SampledTokens:
            sampled = self._sample(self._batch.decode(), running)
            self._batch.advance(sampled.tokens)
            return sampled

        return self._guarded(work, "decode", running, run)

    def _guarded(
        self,
        work: _StepWork,
        phase: str,
        sequences: list[Sequence],
        run: Callable[[], SampledTokens | None],
    ) -> SampledTokens | None:
        """``run()`` (a forward pass and its sampling), timed; if it fails, it fails
        ``sequences``, not the engine, and gives None."""
        started = time.perf_counter()
        try:
            return run()
        except Exception as exc:
            LOG.exception("%s forward failed; failing %d sequences", phase, len(sequences))
            self._fail(sequences, _inference_error(f"{phase} forward pass", exc))
            return None
        finally:
            work.forward_seconds += time.perf_counter() - started

    def _sample(self, logits: torch.Tensor, sequences: list[Sequence]) -> SampledTokens:
        """Next token of each row of ``logits`` (one row per sequence), on the device."""
        return self._sampler.sample(
            logits, [s.params for s in sequences], [s.generator for s in sequences],
            [s.plan for s in sequences],
        )  # fmt: skip

    def _deliver(
        self, sequences: list[Sequence], tokens: list[int], logprobs: list[TokenLogprobs | None]
    ) -> None:
        """Hand each sampled token (and its log-probabilities) to its sequence."""
        for sequence, token, values in zip(sequences, tokens, logprobs, strict=True):
            self._accept(sequence, token, values)

    def _accept(self, sequence: Sequence, token: int, logprobs: TokenLogprobs | None) -> None:
        try:
            sequence.accept(token, logprobs)
        except Exception as exc:  # e.g. a token the tokenizer cannot decode: only this one fails
            LOG.exception("could not deliver a generated token")
            self._fail([sequence], exc)

    def _drop_cancelled(self) -> None:
        for sequence in [*self._prefilling, *self._batch.running_sequences()]:
            if not sequence.finished and _cancelled(sequence):
                sequence.cancel()
        with self._condition:
            cancelled = [s for s in self._waiting if _cancelled(s)]
            for sequence in cancelled:
                self._waiting.remove(sequence)
        for sequence in cancelled:
            sequence.cancel()
        self._release(cancelled)
        self._retire_finished()

    def _admit(self) -> None:
        """Waiting requests take free rows while their tokens fit, oldest first."""
        admitted: list[Sequence] = []
        with self._condition:
            while (
                self._waiting
                and len(self._batch.table) + len(admitted) < self._batch.table.capacity
                and self._budget.fits(self._waiting[0].reserved_tokens)
            ):
                sequence = self._waiting.popleft()
                self._budget.take(sequence.reserved_tokens)
                sequence.admitted = True
                admitted.append(sequence)
        for sequence in admitted:
            self._batch.acquire(sequence)
            self._prefilling.append(sequence)

    def _retire_finished(self) -> None:
        """Finished sequences leave: their rows and tokens are free for others."""
        done = [s for s in [*self._prefilling, *self._batch.running_sequences()] if s.finished]
        if not done:
            return
        self._prefilling = [s for s in self._prefilling if not s.finished]
        self._release(done)

    def _release(self, sequences: list[Sequence]) -> None:
        """Give back the capacity of finished sequences (each exactly once), then report them.

        The counters come first: nothing before them can raise, so a failure
        later on (a row copy, metrics) never leaks capacity.
        """
        fresh = [s for s in sequences if not s.released]
        if not fresh:
            return
        for sequence in fresh:
            sequence.released = True
            self._sampler.release(sequence.plan)
            if sequence.admitted:
                self._budget.give_back(sequence.reserved_tokens)
        with self._condition:
            self._in_flight -= len(fresh)
            self._condition.notify_all()
        try:
            for sequence in fresh:
                if self._batch.table.holds(sequence):
                    self._batch.release(sequence)
        finally:
            for sequence in fresh:
                if sequence.finish_reason is not None:
                    self._metric("sequence_finished", sequence.finish_reason)

    def _fail(self, sequences: list[Sequence], error: BaseException) -> None:
        for sequence in sequences:
            if not sequence.finished:
                sequence.finish_reason = FinishReason.ERROR
                _safe_fail(sequence, error)

    def _fail_everything(self, error: BaseException) -> None:
        """Fail every sequence in flight and start from an empty batch; never raises."""
        try:
            with self._condition:
                victims = [*self._prefilling, *self._batch.running_sequences(), *self._waiting]
                self._waiting.clear()
            self._fail(victims, error)
        except Exception:
            LOG.exception("could not fail the requests in flight")
            victims = []
        finally:
            self._reset(victims)

    def _fail_leftovers(self) -> None:
        """At stop: whatever is still in flight gets UNAVAILABLE."""
        self._fail_everything(CapacityError(UNLOADED))

    def _reset(self, victims: list[Sequence]) -> None:
        """Empty the batch; capacity first, so nothing that raises afterwards can leak it."""
        for sequence in victims:
            sequence.released = True
            self._sampler.release(sequence.plan)
        self._prefilling = []
        self._budget.clear()
        with self._condition:
            self._in_flight = len(self._waiting)  # submitted after the failure
            self._condition.notify_all()
        try:
            self._batch.clear()
        except Exception:
            LOG.exception("could not clear the running batch")

    def _report(self, work: _StepWork) -> None:
        """Metrics and the timeline for one step; a failure here fails no request."""
        with self._condition:
            waiting = len(self._waiting)
        chunk = work.prefill
        if chunk is not None:
            self._metric("forward_pass", "prefill", len(chunk.sequences))
        for sequence in work.first_tokens:
            if sequence.first_token_at is not None:
                self._metric("first_token", sequence.first_token_at - sequence.arrival)
        if work.decoded:
            self._metric("forward_pass", "decode", len(work.decoded))
        if work.first_tokens or work.decoded:
            self._metric("tokens_generated", len(work.first_tokens) + len(work.decoded))
        self._metric("occupancy", len(self._batch.table), waiting, self._batch.table.capacity)
        self._metric("kv_tokens", self._budget.reserved, self._budget.capacity)
        if self.timeline is None or (chunk is None and not work.decoded):
            return
        phase: Phase = "decode" if chunk is None else "mixed" if work.decoded else "prefill"
        rows = len(work.decoded) + (len(chunk.sequences) if chunk else 0)
        tokens = len(work.decoded) + (chunk.padded_tokens if chunk else 0)
        try:
            self.timeline.record(phase, rows, tokens, work.ended, work.forward_seconds, waiting)
        except Exception:
            self._metric_failed("the step timeline")

    def _metric(self, name: str, *args: Any) -> None:
        try:
            getattr(self.metrics, name)(*args)
        except Exception:
            self._metric_failed(name)

    def _metric_failed(self, what: str) -> None:
        self._metric_failures += 1
        # The first failure with its traceback, then one line per thousand: a broken
        # metrics backend must neither fail requests nor flood the log.
        if self._metric_failures == 1:
            LOG.exception("could not record %s; serving goes on", what)
        elif self._metric_failures % 1000 == 0:
            LOG.warning("%d metric updates failed so far", self._metric_failures)


def _cancelled(sequence: Sequence) -> bool:
    try:
        return bool(sequence.sink.is_cancelled())
    except Exception:  # a broken sender means nobody is listening any more
        LOG.exception("is_cancelled() failed; treating the request as cancelled")
        return True


def _inference_error(what: str, cause: Exception) -> InferenceError:
    """What the requests of a failed ``what`` get: it names the failure; the model serves on."""
    error = InferenceError(
        f"{what} failed ({type(cause).__name__}: {cause}); the model is still serving, retry"
    )
    error.__cause__ = cause
    return error


def _safe_fail(sequence: Sequence, error: BaseException) -> None:
    try:
        sequence.sink.fail(error)
    except Exception:
        LOG.exception("could not deliver an error response")
