"""Generation metrics as Triton custom metrics (``pb_utils.MetricFamily``) on ``/metrics``.

``ds_triton_generation_forward_passes_total`` against
``ds_triton_generation_tokens_total`` shows that streams share forward passes:
with N streams decoding together, one decode pass yields N tokens.
"""

from __future__ import annotations

import time

import triton_python_backend_utils as pb_utils

from ds_triton.generation.sequence import FinishReason

FLUSH_SECONDS = 0.25
# Time to first token on CPU ranges from milliseconds (tiny model) to seconds.
TTFT_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]
BATCH_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256]


class TritonGenerationMetrics:
    """Implements ``GenerationMetrics`` with Triton counters, gauges and histograms."""

    def __init__(self, labels: dict[str, str]) -> None:
        family = pb_utils.MetricFamily
        self._families = {
            "tokens": family(
                name="ds_triton_generation_tokens_total",
                description="Tokens generated (all sequences)",
                kind=family.COUNTER,
            ),
            "forward": family(
                name="ds_triton_generation_forward_passes_total",
                description="Model forward passes, by phase (prefill of new prompts, decode step)",
                kind=family.COUNTER,
            ),
            "ttft": family(
                name="ds_triton_generation_time_to_first_token_seconds",
                description="Seconds from a request's arrival to its first generated token",
                kind=family.HISTOGRAM,
            ),
            "batch": family(
                name="ds_triton_generation_batch_occupancy",
                description="Sequences advanced by each decode forward pass",
                kind=family.HISTOGRAM,
            ),
            "sequences": family(
                name="ds_triton_generation_sequences",
                description="Sequences now decoding (running) or queued (waiting), and the cap",
                kind=family.GAUGE,
            ),
            "finished": family(
                name="ds_triton_generation_sequences_finished_total",
                description="Finished sequences by reason (stop, length, cancelled, error)",
                kind=family.COUNTER,
            ),
        }
        f = self._families
        self._tokens = f["tokens"].Metric(labels=labels)
        self._forward = {
            phase: f["forward"].Metric(labels={**labels, "phase": phase})
            for phase in ("prefill", "decode")
        }
        self._ttft = f["ttft"].Metric(labels=labels, buckets=TTFT_BUCKETS)
        self._batch = f["batch"].Metric(labels=labels, buckets=BATCH_BUCKETS)
        self._sequences = {
            state: f["sequences"].Metric(labels={**labels, "state": state})
            for state in ("running", "waiting", "capacity")
        }
        self._finished = {
            reason: f["finished"].Metric(labels={**labels, "reason": reason.value})
            for reason in FinishReason
        }
        self._last_occupancy: tuple[int, int, int] | None = None
        # Counters are summed here and published at most every FLUSH_SECONDS
        # (and when the engine goes idle): one message per flush, not per step.
        self._pending_tokens = 0
        self._pending_forward = {"prefill": 0, "decode": 0}
        self._flushed_at = time.monotonic()

    def forward_pass(self, phase: str, rows: int) -> None:
        self._pending_forward[phase] += 1
        if phase == "decode":
            self._batch.observe(rows)

    def tokens_generated(self, count: int) -> None:
        self._pending_tokens += count
        if time.monotonic() - self._flushed_at >= FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        self._flushed_at = time.monotonic()
        if self._pending_tokens:
            self._tokens.increment(self._pending_tokens)
            self._pending_tokens = 0
        for phase, count in self._pending_forward.items():
            if count:
                self._forward[phase].increment(count)
                self._pending_forward[phase] = 0

    def first_token(self, seconds: float) -> None:
        self._ttft.observe(seconds)

    def occupancy(self, running: int, waiting: int, capacity: int) -> None:
        # Each metric call is a message to the server process; skip unchanged values.
        if self._last_occupancy == (running, waiting, capacity):
            return
        self._last_occupancy = (running, waiting, capacity)
        self._sequences["running"].set(running)
        self._sequences["waiting"].set(waiting)
        self._sequences["capacity"].set(capacity)

    def sequence_finished(self, reason: FinishReason) -> None:
        self._finished[reason].increment(1)
        self.flush()  # so counters are current when a client sees its last response

    def close(self) -> None:
        """Publish what is buffered, then drop metrics before their families (backend rule)."""
        self.flush()
        del self._tokens, self._ttft, self._batch
        self._forward, self._sequences, self._finished = {}, {}, {}
        self._families.clear()


