"""The worker's Prometheus metrics: jobs in/ok/failed/dead-lettered, latency, in-flight, consumer lag.

Each worker has its own registry, served on ``--metrics-port`` (``/metrics``).
The lag gauges are read from the broker (the consumer every worker of the group
shares), so any one worker's scrape shows the group's backlog.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from ds_triton_client.queue.broker import Backlog

PREFIX = "ds_triton_queue"
#: Seconds: from a 5 ms embed to a minute-long generation.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class WorkerMetrics:
    """The counters, histograms and gauges of one worker (labels: task, and the error type)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.received = Counter(f"{PREFIX}_jobs_received", "Job deliveries taken by this worker "
                                "(redeliveries included).", ["task"], registry=r)
        self.succeeded = Counter(f"{PREFIX}_jobs_succeeded", "Jobs whose result was published and "
                                 "acknowledged.", ["task"], registry=r)
        self.failed = Counter(f"{PREFIX}_jobs_failed", "Failed attempts, by error type (retried or "
                              "dead-lettered).", ["task", "error"], registry=r)
        self.retried = Counter(f"{PREFIX}_jobs_retried", "Jobs handed back to the broker for a later "
                               "attempt (backoff).", ["task"], registry=r)
        self.dead_lettered = Counter(f"{PREFIX}_jobs_dead_lettered", "Jobs sent to the dead-letter "
                                     "subject, by reason.", ["task", "reason"], registry=r)
        self.released = Counter(f"{PREFIX}_jobs_released", "Jobs given back unstarted or unfinished "
                                "by a stopping worker.", registry=r)
        self.run_seconds = Histogram(f"{PREFIX}_job_run_seconds", "Inference time of a job attempt "
                                     "(retries across replicas included).", ["task"],
                                     buckets=LATENCY_BUCKETS, registry=r)
        self.end_to_end_seconds = Histogram(f"{PREFIX}_job_end_to_end_seconds", "From submitted_at to "
                                            "the result being stored (jobs that carry submitted_at).",
                                            ["task"], buckets=LATENCY_BUCKETS, registry=r)
        self.in_flight = Gauge(f"{PREFIX}_jobs_in_flight", "Jobs this worker holds now.", registry=r)
        self.in_flight_limit = Gauge(f"{PREFIX}_jobs_in_flight_limit", "--max-in-flight of this worker.",
                                     registry=r)
        self.publish_retries = Counter(f"{PREFIX}_publish_retries", "Result or dead-letter publishes "
                                       "tried again (broker unavailable).", registry=r)
        self.lag_pending = Gauge(f"{PREFIX}_consumer_pending", "Jobs in the stream not yet delivered to "
                                 "any worker of the group (consumer lag).", registry=r)
        self.lag_in_flight = Gauge(f"{PREFIX}_consumer_ack_pending", "Jobs delivered to the group and "
                                   "not yet acknowledged.", registry=r)
        self.lag_redelivered = Gauge(f"{PREFIX}_consumer_redelivered", "Of those, jobs delivered more "
                                     "than once.", registry=r)
        self.lag_waiting = Gauge(f"{PREFIX}_consumer_waiting_pulls", "Pull requests of idle workers.",
                                 registry=r)
        self.broker_up = Gauge(f"{PREFIX}_broker_up", "1 when the last broker call succeeded.", registry=r)

    def set_backlog(self, backlog: Backlog) -> None:
        self.lag_pending.set(backlog.pending)
        self.lag_in_flight.set(backlog.in_flight)
        self.lag_redelivered.set(backlog.redelivered)
        self.lag_waiting.set(backlog.waiting)

    def serve(self, port: int, host: str = "0.0.0.0") -> Any:
        """Serve ``/metrics`` from a thread; returns the server (``.shutdown()`` stops it)."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        return server
