"""In-flight (continuous) batching: one thread, one decode forward per step for all sequences.

Each step of the loop:

1. sequences whose client cancelled leave (checked every step, so a slot frees
   at the next step);
2. waiting requests take the free slots: their prompts run through ONE prefill
   forward together and join the running batch (KV cache rows appended);
3. ONE decode forward advances every running sequence by a token, reusing the
   KV cache; sequences that finished (EOS, stop string, max_tokens) leave
   without stalling the others.

Requests beyond ``max_concurrent_sequences`` wait in a queue of at most
``max_queued_requests``; beyond that ``submit`` raises ``CapacityError``
(UNAVAILABLE), so load is shed with a clear error instead of memory growth.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Any

import torch

from ds_triton.errors import CapacityError, InvalidInputError
from ds_triton.generation.metrics import CountingMetrics, GenerationMetrics
from ds_triton.generation.model_runner import ModelRunner
from ds_triton.generation.request import GenerationRequest
from ds_triton.generation.running_batch import RunningBatch
from ds_triton.generation.sampling import sample_next_tokens
from ds_triton.generation.sequence import FinishReason, OutputSink, Sequence
from ds_triton.spec import GenerationSpec
from ds_triton_interface import TEXT_INPUT

LOG = logging.getLogger(__name__)


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
    ) -> None:
        self.runner = runner
        self.tokenizer = tokenizer
        self.options = options
        self.max_positions = max_positions
        self.eos_token_id = eos_token_id
        self.metrics: GenerationMetrics = metrics or CountingMetrics()
        self._condition = threading.Condition()
        self._waiting: deque[Sequence] = deque()
        self._in_flight = 0  # waiting + running, guarded by _condition
        self._running: list[Sequence] = []
        self._batch = RunningBatch()
        self._thread: threading.Thread | None = None
        self._stopping = False

    # -- any thread -------------------------------------------------------------

    def submit(self, request: GenerationRequest, sink: OutputSink) -> None:
        """Queue ``request``; its responses go to ``sink``.

        Raises:
            InvalidInputError: The prompt is too long for the configured limits.
            CapacityError: Running and queued sequences are at their caps.
        """
        prompt_ids = self.tokenize(request)
        sequence = Sequence(request, prompt_ids, sink, self.tokenizer, self.eos_token_id)
        limit = self.options.max_concurrent_sequences + self.options.max_queued_requests
        with self._condition:
            if self._stopping:
                raise CapacityError("the model is shutting down")
            if self._in_flight >= limit:
                raise CapacityError(
                    f"too many concurrent requests: {self.options.max_concurrent_sequences} "
                    f"sequences run and {self.options.max_queued_requests} may wait; retry later"
                )
            self._in_flight += 1
            self._waiting.append(sequence)
            self._condition.notify()

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

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the loop; sequences still queued or running get an UNAVAILABLE error."""
        with self._condition:
            self._stopping = True
            self._condition.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        shutting_down = CapacityError("the model was unloaded before the request finished")
        with self._condition:
            leftover = [*self._running, *self._waiting]
            self._running, self._waiting = [], deque()
            self._in_flight = 0
        for sequence in leftover:
            _safe_fail(sequence, shutting_down)

    @property
    def in_flight(self) -> int:
        with self._condition:
            return self._in_flight

    # -- engine thread ----------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self._condition:
                idle = not self._waiting and not self._running
            if idle:
                self._flush_metrics()
            with self._condition:
                while not self._stopping and not self._waiting and not self._running:
                    self._condition.wait()
                if self._stopping:
                    break
            try:
                self.step()
            except Exception as exc:  # the loop must survive, or every request would hang
                LOG.exception("generation engine step failed outside the forward pass")
                self._fail_everything(exc)
        self._flush_metrics()

    def _flush_metrics(self) -> None:
        try:
            self.metrics.flush()
        except Exception:  # metrics are best effort; serving goes on
            LOG.exception("could not publish generation metrics")

    def _fail_everything(self, error: BaseException) -> None:
        with self._condition:
            victims = [*self._running, *self._waiting]
            self._waiting.clear()
        for sequence in victims:
            if not sequence.finished:
                sequence.finish_reason = FinishReason.ERROR
                _safe_fail(sequence, error)
        self._running = []
        self._batch = RunningBatch()
        self._release(victims)

    def step(self) -> None:
        """One scheduling step (public so tests can drive the engine without a thread)."""
        self._drop_cancelled()
        self._retire_finished()
        admitted = self._take_waiting()
        try:
            if admitted:
                self._prefill(admitted)
            if self._running:
                self._decode()
        except Exception as exc:  # a failed forward fails its sequences, not the engine
            victims = list({id(s): s for s in [*self._running, *admitted]}.values())
            LOG.exception("generation step failed; failing %d sequences", len(victims))
            for sequence in victims:
                if not sequence.finished:
                    sequence.finish_reason = FinishReason.ERROR
                    _safe_fail(sequence, exc)
            self._running = []
            self._batch = RunningBatch()
            self._release(victims)
        self._retire_finished()
        with self._condition:
            waiting = len(self._waiting)
        self.metrics.occupancy(len(self._running), waiting, self.options.max_concurrent_sequences)

    def _drop_cancelled(self) -> None:
        for sequence in self._running:
            if _cancelled(sequence):
                sequence.cancel()
        with self._condition:
            waiting = list(self._waiting)
        # is_cancelled() may be a round trip to the server: ask outside the lock.
        cancelled = [s for s in waiting if _cancelled(s)]
        with self._condition:
            for sequence in cancelled:
                self._waiting.remove(sequence)
        for sequence in cancelled:
            sequence.cancel()
        self._release(cancelled)

    def _take_waiting(self) -> list[Sequence]:
        with self._condition:
            free = self.options.max_concurrent_sequences - len(self._running)
            return [self._waiting.popleft() for _ in range(min(free, len(self._waiting)))]

    def _prefill(self, admitted: list[Sequence]) -> None:
        prefill = self.runner.prefill([s.prompt_ids for s in admitted])
        self.metrics.forward_pass("prefill", len(admitted))
        tokens = self._sample(prefill.logits, admitted)
        for sequence, token in zip(admitted, tokens.tolist(), strict=True):
            sequence.accept(token)
            if sequence.first_token_at is not None:
                self.metrics.first_token(sequence.first_token_at - sequence.arrival)
        self.metrics.tokens_generated(len(admitted))
        rows = [i for i, s in enumerate(admitted) if not s.finished]
        self._batch.join(prefill, rows, tokens[rows])
        self._running.extend(admitted[i] for i in rows)
        self._release([s for s in admitted if s.finished])

    def _decode(self) -> None:
        tokens, mask, positions = self._batch.decode_inputs()
        logits, cache = self.runner.decode(tokens, mask, positions, self._batch.cache)
        self.metrics.forward_pass("decode", len(self._running))
        new_tokens = self._sample(logits, self._running)
        self._batch.advance(cache, mask, new_tokens)
        for sequence, token in zip(self._running, new_tokens.tolist(), strict=True):
            sequence.accept(token)
        self.metrics.tokens_generated(len(self._running))

    def _sample(self, logits: torch.Tensor, sequences: list[Sequence]) -> torch.Tensor:
        blocked = None
        if self.eos_token_id is not None and any(s.eos_blocked for s in sequences):
            blocked = torch.tensor([s.eos_blocked for s in sequences], device=logits.device)
        return sample_next_tokens(
            logits,
            [s.params for s in sequences],
            [s.generator for s in sequences],
            blocked_token=self.eos_token_id,
            blocked_rows=blocked,
        )

    def _retire_finished(self) -> None:
        """Finished sequences leave the running batch (their rows and cache)."""
        keep = [i for i, s in enumerate(self._running) if not s.finished]
        if len(keep) == len(self._running):
            return
        done = [s for s in self._running if s.finished]
        self._batch.keep(keep)
        self._running = [self._running[i] for i in keep]
        self._release(done)

    def _release(self, sequences: list[Sequence]) -> None:
        """Give back the capacity of finished sequences (each exactly once)."""
        fresh = [s for s in sequences if not s.released]
        if not fresh:
            return
        for sequence in fresh:
            sequence.released = True
            if sequence.finish_reason is not None:
                self.metrics.sequence_finished(sequence.finish_reason)
        with self._condition:
            self._in_flight -= len(fresh)


def _cancelled(sequence: Sequence) -> bool:
    try:
        return bool(sequence.sink.is_cancelled())
    except Exception:  # a broken sender means nobody is listening any more
        LOG.exception("is_cancelled() failed; treating the request as cancelled")
        return True


def _safe_fail(sequence: Sequence, error: BaseException) -> None:
    try:
        sequence.sink.fail(error)
    except Exception:
        LOG.exception("could not deliver an error response")
