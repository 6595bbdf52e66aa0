"""The dynamic batcher's queue policy, derived from the spec's latency budget.

Triton's ``default_queue_policy`` bounds two things (core ``scheduler_utils.cc``):

* ``max_queue_size``: a request that finds the queue full is refused at once
  with UNAVAILABLE ("Exceeds maximum queue size"), HTTP 503;
* ``default_timeout_microseconds`` with ``timeout_action: REJECT``: a request
  still queued after the timeout is refused with UNAVAILABLE ("Request timeout
  expired") the next time the batcher looks at the queue: when an instance is
  free to take a batch (under load, after every forward pass), or, when idle,
  at the earliest timeout of the requests it holds (measured on a real server:
  ``tests/repository/test_queue_policy_server.py``);
* ``allow_timeout_override``: a request's own ``timeout`` parameter replaces
  the default only when it is shorter (a longer one is ignored).

Any of these turns off the batcher's prefetching of the next batch, which in
Triton 2.51 makes a single-instance model stall up to 500 ms per request that
arrives while its instance is busy (``perf/repro/batcher_lost_wakeup.py``); so
no policy is rendered unless the spec sets a budget or a bound, and ``check``
refuses one on a single instance.

The derivation: the queue holds one preferred batch per instance (the smallest
preferred size, else ``max_batch_size``): what the instances take in one round
of the batches the batcher aims for. Under overload a request beyond that is
refused at once, and an accepted one waits about one round. The timeout is
the backstop for rounds that run slow (long texts, a slow machine): an accepted
request waits at most half the budget, leaving the other half for the forward
pass that runs it.
"""

from __future__ import annotations

from dataclasses import dataclass

from tritonclient.grpc import model_config_pb2 as mc

from ds_triton.spec import BatchingSpec

QUEUE_SHARE_OF_BUDGET = 0.5


@dataclass(frozen=True)
class QueuePolicy:
    """What ``default_queue_policy`` holds (0: unbounded / no timeout)."""

    max_queue_size: int
    timeout_us: int
    allow_timeout_override: bool

    def message(self) -> mc.ModelQueuePolicy:
        policy = mc.ModelQueuePolicy()
        if self.max_queue_size:
            policy.max_queue_size = self.max_queue_size
        if self.timeout_us:
            # Requests older than this are refused, not run late.
            policy.timeout_action = mc.ModelQueuePolicy.REJECT
            policy.default_timeout_microseconds = self.timeout_us
            policy.allow_timeout_override = self.allow_timeout_override
        return policy


def derived_timeout_us(latency_budget_ms: int) -> int:
    """The longest a request may wait in the queue under a latency budget."""
    return int(latency_budget_ms * 1000 * QUEUE_SHARE_OF_BUDGET)


def queue_policy(batching: BatchingSpec, instances: int) -> QueuePolicy:
    """The queue policy of a model whose ``instances`` share one batcher queue."""
    budget = batching.latency_budget_ms
    size = batching.max_queue_size
    if size is None:
        batch = min(batching.preferred_batch_sizes, default=batching.max_batch_size)
        size = max(1, instances) * batch if budget is not None else 0
    timeout = batching.queue_timeout_us
    if timeout is None:
        timeout = derived_timeout_us(budget) if budget is not None else 0
    return QueuePolicy(size, timeout, batching.allow_timeout_override and timeout > 0)
