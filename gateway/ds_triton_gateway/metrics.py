"""The gateway's Prometheus metrics (on ``GET /metrics``).

* ``ds_triton_gateway_requests_total{route,model,status}``: answered requests;
* ``ds_triton_gateway_request_duration_seconds{route,model}``: arrival to last byte
  (histogram; for streams, the whole stream);
* ``ds_triton_gateway_time_to_first_token_seconds{route,model}``: arrival to the first
  generated text sent (histogram; completions and chat);
* ``ds_triton_gateway_tokens_total{model,kind="prompt"|"completion"}``: usage reported;
* ``ds_triton_gateway_requests_in_flight``: requests being served now.

Each app has its own registry, so several gateways can live in one process (tests).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

# Gateway latency spans sub-millisecond embeddings to minutes-long streams.
DURATION_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
)
TTFT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

CONTENT_TYPE = CONTENT_TYPE_LATEST


class GatewayMetrics:
    """Counters and histograms of one gateway."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "ds_triton_gateway_requests", "Requests answered, by route, model and HTTP status",
            ["route", "model", "status"], registry=self.registry,
        )  # fmt: skip
        self.duration = Histogram(
            "ds_triton_gateway_request_duration_seconds", "Seconds from arrival to the last byte sent",
            ["route", "model"], buckets=DURATION_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.ttft = Histogram(
            "ds_triton_gateway_time_to_first_token_seconds",
            "Seconds from arrival to the first generated text sent", ["route", "model"],
            buckets=TTFT_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.tokens = Counter(
            "ds_triton_gateway_tokens", "Tokens in usage reports, by kind (prompt, completion)",
            ["model", "kind"], registry=self.registry,
        )  # fmt: skip
        self.in_flight = Gauge(
            "ds_triton_gateway_requests_in_flight", "Requests being served", registry=self.registry
        )

    def finished(self, route: str, model: str, status: int, seconds: float) -> None:
        self.requests.labels(route, model, str(status)).inc()
        self.duration.labels(route, model).observe(seconds)

    def usage(self, model: str, prompt: int | None, completion: int | None) -> None:
        if prompt:
            self.tokens.labels(model, "prompt").inc(prompt)
        if completion:
            self.tokens.labels(model, "completion").inc(completion)

    def render(self) -> bytes:
        return generate_latest(self.registry)
