"""Generation metrics as Triton custom metrics (``pb_utils.MetricFamily``) on ``/metrics``.

The engine adds to an in-process ``MetricsAggregator``; a publisher thread
takes its deltas every ``PUBLISH_SECONDS`` (and once more on close) and makes
the calls, each a round trip to the server process. So the values on
``/metrics`` are at most about a second old, and the decode loop never waits
for the server. ``$DS_TRITON_METRICS_PUBLISH_S`` sets another interval (the
tests that time a freed slot from these metrics use a few milliseconds).

``ds_triton_generation_forward_passes_total`` against
``ds_triton_generation_tokens_total`` shows that streams share forward passes:
with N streams decoding together, one decode pass yields N tokens.
"""

from __future__ import annotations

import logging
import os
import threading

import triton_python_backend_utils as pb_utils

from ds_triton.generation.metrics import PHASES, MetricsAggregator, MetricsDelta
from ds_triton.generation.sequence import FinishReason

LOG = logging.getLogger(__name__)

PUBLISH_SECONDS = 1.0
PUBLISH_SECONDS_ENV = "DS_TRITON_METRICS_PUBLISH_S"
# Time to first token on CPU ranges from milliseconds (tiny model) to seconds.
TTFT_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]
BATCH_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256]
# Gauge name suffix -> (state label, key in MetricsDelta.gauges).
SEQUENCE_GAUGES = {"running": "running", "waiting": "waiting", "capacity": "capacity"}
TOKEN_GAUGES = {"reserved": "kv_reserved", "capacity": "kv_capacity"}
# Key -> (metric name, MetricFamily kind, description).
FAMILIES = {
    "tokens": ("ds_triton_generation_tokens_total", "COUNTER", "Tokens generated (all sequences)"),
    "forward": (
        "ds_triton_generation_forward_passes_total", "COUNTER",
        "Model forward passes, by phase (prefill of prompt chunks, decode step)",
    ),
    "ttft": (
        "ds_triton_generation_time_to_first_token_seconds", "HISTOGRAM",
        "Seconds from a request's arrival to its first generated token",
    ),
    "batch": (
        "ds_triton_generation_batch_occupancy", "HISTOGRAM",
        "Sequences advanced by each decode forward pass",
    ),
    "sequences": (
        "ds_triton_generation_sequences", "GAUGE",
        "Sequences holding KV-cache rows (running), queued (waiting), and the rows",
    ),
    "kv_tokens": (
        "ds_triton_generation_kv_tokens", "GAUGE",
        "KV-cache tokens reserved by admitted sequences, and the token budget",
    ),
    "finished": (
        "ds_triton_generation_sequences_finished_total", "COUNTER",
        "Finished sequences by reason (stop, length, cancelled, error)",
    ),
}  # fmt: skip


class TritonMetricsPublisher:
    """Publishes an aggregator's deltas as Triton counters, gauges and histograms."""

    def __init__(
        self, labels: dict[str, str], source: MetricsAggregator, interval: float | None = None
    ) -> None:
        self._source = source
        self._interval = publish_seconds() if interval is None else interval
        family = pb_utils.MetricFamily
        self._families = {
            key: family(name=name, description=description, kind=getattr(family, kind))
            for key, (name, kind, description) in FAMILIES.items()
        }
        f = self._families
        self._tokens = f["tokens"].Metric(labels=labels)
        self._forward = {p: f["forward"].Metric(labels={**labels, "phase": p}) for p in PHASES}
        self._ttft = f["ttft"].Metric(labels=labels, buckets=TTFT_BUCKETS)
        self._batch = f["batch"].Metric(labels=labels, buckets=BATCH_BUCKETS)
        self._gauges = {
            key: f["sequences"].Metric(labels={**labels, "state": state})
            for state, key in SEQUENCE_GAUGES.items()
        }
        self._gauges.update(
            {
                key: f["kv_tokens"].Metric(labels={**labels, "state": state})
                for state, key in TOKEN_GAUGES.items()
            }
        )
        self._finished = {
            reason: f["finished"].Metric(labels={**labels, "reason": reason.value})
            for reason in FinishReason
        }
        self._published_gauges: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="generation-metrics", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def publish(self) -> None:
        """Publish what accumulated since the last call."""
        self._apply(self._source.take())

    def close(self) -> None:
        """Stop the thread, publish the rest, then drop metrics before their families (backend rule)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        try:
            self.publish()
        finally:
            del self._tokens, self._ttft, self._batch
            self._forward, self._gauges, self._finished = {}, {}, {}
            self._families.clear()

    def _loop(self) -> None:
        failures = 0
        while not self._stop.wait(self._interval):
            try:
                self.publish()
            except Exception:  # metrics are best effort; serving goes on
                failures += 1
                if failures == 1 or failures % 100 == 0:
                    LOG.exception("could not publish generation metrics (%d failures)", failures)

    def _apply(self, delta: MetricsDelta) -> None:
        # The token counter goes last: a scrape that sees a step's tokens sees the rest of it.
        for phase, count in delta.forward_passes.items():
            if count and phase in self._forward:
                self._forward[phase].increment(count)
        for seconds in delta.first_token_seconds:
            self._ttft.observe(seconds)
        for rows, passes in sorted(delta.decode_rows.items()):
            for _ in range(passes):
                self._batch.observe(rows)
        for reason, count in delta.finished.items():
            self._finished[reason].increment(count)
        if delta.tokens:
            self._tokens.increment(delta.tokens)
        for key, value in delta.gauges.items():
            # Each call is a message to the server process; unchanged values are skipped.
            if key in self._gauges and self._published_gauges.get(key) != value:
                self._gauges[key].set(value)
                self._published_gauges[key] = value


def publish_seconds() -> float:
    """The publishing interval: ``$DS_TRITON_METRICS_PUBLISH_S`` when set to a positive number."""
    try:
        value = float(os.environ.get(PUBLISH_SECONDS_ENV, PUBLISH_SECONDS))
    except ValueError:
        LOG.warning("%s is not a number; publishing every %ss", PUBLISH_SECONDS_ENV, PUBLISH_SECONDS)
        return PUBLISH_SECONDS
    return value if value > 0 else PUBLISH_SECONDS
