"""The batcher's queue policy against the latency budget in model.json.

``ds-triton render`` derives the policy from the budget (see
``ds_triton.repository.queue_policy``), so these fire on hand edits, on
explicit ``max_queue_size``/``queue_timeout_us`` that contradict the budget,
and on settings Triton would accept but that cannot do what they say.
"""

from __future__ import annotations

from tritonclient.grpc import model_config_pb2 as mc

from ds_triton.repository.checks.subject import Subject
from ds_triton.repository.render import instances_of

FIELD = "dynamic_batching"


def _single_instance(config: mc.ModelConfig) -> bool:
    # A KIND_GPU group without ids means one instance per GPU Triton finds: unknown here.
    if any(g.kind == mc.ModelInstanceGroup.KIND_GPU and not g.gpus for g in config.instance_group):
        return False
    return instances_of(config) == 1


def check_queue_policy(model: Subject) -> None:
    assert model.config is not None and model.spec is not None
    if model.spec.task != "embedding" or not model.config.HasField(FIELD):
        return  # decoupled models refuse in the model; a missing batcher is a stale render
    batcher = model.config.dynamic_batching
    policy = batcher.default_queue_policy
    timeout, delay = policy.default_timeout_microseconds, batcher.max_queue_delay_microseconds
    if batcher.HasField("default_queue_policy") and _single_instance(model.config):
        model.report(
            "queue",
            "a queue policy on a model with one instance: Triton 2.51 then stops prefetching "
            "batches, and a request that arrives while the instance is busy can wait 500 ms "
            "(perf/repro/batcher_lost_wakeup.py); use deployment.instances_per_device >= 2, or "
            "no latency_budget_ms, max_queue_size or queue_timeout_us",
            field=FIELD,
        )
    if policy.allow_timeout_override and not timeout:
        model.report(
            "queue",
            "allow_timeout_override has no effect without default_timeout_microseconds: Triton "
            "only lets a request shorten the model's queue timeout, never set one",
            field=FIELD,
        )
    if timeout and delay >= timeout:
        model.report(
            "queue",
            f"the batcher may hold a request {delay} us to fill a batch "
            f"(max_queue_delay_microseconds), not less than its queue timeout {timeout} us: "
            "requests would be refused while waiting for a batch; lower batching.max_queue_delay_us "
            "or raise batching.latency_budget_ms",
            field=FIELD,
        )
    budget_ms = model.spec.batching.latency_budget_ms
    if budget_ms is None:
        return
    budget = f"batching.latency_budget_ms ({budget_ms} ms)"
    if not timeout:
        model.report(
            "queue",
            f"no queue timeout although model.json sets {budget}: under overload requests "
            "would wait in the queue without bound; set a default_timeout_microseconds with "
            "timeout_action REJECT (`ds-triton render` derives it)",
            field=FIELD,
        )
    elif timeout > budget_ms * 1000:
        model.report(
            "queue",
            f"queue timeout {timeout} us exceeds {budget}: an accepted request could wait longer "
            "than its whole budget before it even runs; lower batching.queue_timeout_us",
            field=FIELD,
        )
    elif policy.timeout_action == mc.ModelQueuePolicy.DELAY:
        model.report(
            "queue",
            f"timeout_action DELAY runs expired requests late, past {budget}; use REJECT",
            field=FIELD,
        )
    if not policy.max_queue_size:
        model.report(
            "queue",
            f"max_queue_size is unbounded although model.json sets {budget}: an overload fills "
            "the queue instead of being refused at once; set batching.max_queue_size or leave "
            "it null to derive it",
            field=FIELD,
        )
