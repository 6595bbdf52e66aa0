"""Queue-driven inference: jobs on a broker (NATS JetStream), workers that run them on Triton.

Producer side (no inference dependencies)::

    from ds_triton_client.queue import NatsBroker, QueueNames, RunSpec, submit_file, collect
    broker = await NatsBroker.connect("nats://127.0.0.1:4222", QueueNames("jobs"))
    await broker.ensure_streams()
    await submit_file(broker, Path("texts.jsonl"), RunSpec("embed"))
    summary, _ = await collect(broker, Path("texts.jsonl"), Path("vectors.npy"), RunSpec("embed"))

Worker side: ``ds-triton-client --url ... worker`` (or ``Worker(broker, AsyncClient(...)).run()``).
The broker classes, the worker and its metrics need the ``nats`` extra; they are
imported on first use, so the job format is usable without it.
"""

from __future__ import annotations

import importlib
from typing import Any

from ds_triton_client.queue.broker import Backlog, BrokerError, QueueNames, UnroutableError
from ds_triton_client.queue.collector import CollectTimeoutError, collect
from ds_triton_client.queue.job import InvalidJobError, Job, JobFailure, JobResult
from ds_triton_client.queue.producer import RunSpec, Submission, plan_jobs, submit_file, submit_jobs

_LAZY = {
    "NatsBroker": "ds_triton_client.queue.nats_broker",
    "ConsumerSettings": "ds_triton_client.queue.nats_broker",
    "StreamSettings": "ds_triton_client.queue.nats_broker",
    "Worker": "ds_triton_client.queue.worker",
    "WorkerOptions": "ds_triton_client.queue.worker",
    "WorkerMetrics": "ds_triton_client.queue.metrics",
    "LocalNatsServer": "ds_triton_client.queue.local_nats",
}

__all__ = [
    "Backlog",
    "BrokerError",
    "CollectTimeoutError",
    "InvalidJobError",
    "Job",
    "JobFailure",
    "JobResult",
    "QueueNames",
    "RunSpec",
    "Submission",
    "UnroutableError",
    "collect",
    "plan_jobs",
    "submit_file",
    "submit_jobs",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
