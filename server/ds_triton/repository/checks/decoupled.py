"""Decoupled (streaming) models batch in flight themselves; batched models need a batch size."""

from __future__ import annotations

from ds_triton.repository.checks.subject import SPEC_FILE, Subject
from ds_triton.spec import BatchingSpec
from ds_triton_interface import task_interface


def check_spec_batching(model: Subject) -> None:
    assert model.spec is not None
    if model.spec.task == "generation" and model.spec.batching != BatchingSpec():
        model.report(
            "decoupled",
            "'batching' does not apply to a generation model: it is decoupled and batches in "
            "flight itself (see generation.max_concurrent_sequences); remove the section",
            where=SPEC_FILE,
        )


def check_decoupling(model: Subject) -> None:
    assert model.config is not None and model.spec is not None
    config, task = model.config, model.spec.task
    expected = task_interface(task, 1)
    decoupled = config.model_transaction_policy.decoupled
    if expected.decoupled and not decoupled:
        model.report(
            "decoupled",
            f"task {task!r} streams any number of responses per request: it needs "
            "model_transaction_policy { decoupled: true }",
            field="model_transaction_policy",
        )
    if not expected.decoupled and decoupled:
        model.report(
            "decoupled",
            f"task {task!r} answers each request once: remove "
            "model_transaction_policy { decoupled: true }",
            field="model_transaction_policy",
        )
    if not (decoupled or expected.decoupled):
        if config.max_batch_size < 1:
            model.report(
                "decoupled",
                f"task {task!r} is batched by Triton: max_batch_size must be >= 1",
                field="max_batch_size",
            )
        return
    # A decoupled generation model batches in flight inside the model; Triton-side
    # batching would only add queueing delay (and collapses to size 1 with streaming).
    if config.HasField("dynamic_batching"):
        model.report(
            "decoupled",
            "dynamic_batching does not apply to a decoupled model: it batches in flight itself "
            "(generation.max_concurrent_sequences); remove dynamic_batching",
            field="dynamic_batching",
        )
    if config.HasField("sequence_batching"):
        model.report(
            "decoupled", "sequence_batching does not apply to a decoupled model; remove it",
            field="sequence_batching",
        )
    if config.max_batch_size != 0:
        model.report(
            "decoupled",
            f"max_batch_size is {config.max_batch_size}; a decoupled model takes one request "
            "at a time from Triton and needs max_batch_size: 0",
            field="max_batch_size",
        )
    if config.response_cache.enable:
        model.report(
            "decoupled",
            "response_cache cannot cache the streamed responses of a decoupled model; disable it",
            field="response_cache",
        )
