"""Render a ``ModelSpec`` into Triton's ``ModelConfig`` protobuf and its text form.

The message is built with the protobuf classes tritonclient ships, so every
field name and enum value is Triton's own schema by construction; the text is
written with ``text_format`` and parsed back before anyone writes it to disk.
Rendering is a pure function of the spec, the checkpoint's hidden size and the
GPU ids, so a config for 8 GPUs can be produced (and tested) on a laptop.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2 as mc

from ds_triton.devices import instance_count
from ds_triton.repository.queue_policy import queue_policy
from ds_triton.spec import BatchingSpec, DeploymentSpec, ModelSpec
from ds_triton_interface import TaskInterface, TensorSpec, task_interface

BACKEND = "python"

GENERATED_HEADER = (
    "# Generated from 1/model.json by `ds-triton render` / `ds-triton add-model`.\n"
    "# Edit model.json and re-render; `ds-triton check` reports hand edits as a stale render.\n"
)

# Why the config of each task looks the way it does, for whoever reads the file.
TASK_NOTES = {
    "embedding": (
        "# Embedding: Triton's dynamic batcher merges requests into one execute(), which runs as\n"
        "# a few forward passes grouped by length, each within embedding.max_tokens_per_forward.\n"
    ),
    "generation": (
        "# Generation: Triton's vLLM-backend interface. Decoupled (one request, a response per\n"
        "# token when streaming); batching happens inside the model (in-flight), so\n"
        "# max_batch_size is 0 and there is no dynamic_batching.\n"
    ),
}


def render_config(
    spec: ModelSpec,
    *,
    embedding_dimension: int | None = None,
    gpu_ids: Sequence[int] = (),
) -> mc.ModelConfig:
    """Triton's config for ``spec``.

    Args:
        spec: a validated model spec.
        embedding_dimension: the checkpoint's hidden size (embedding models only).
        gpu_ids: the GPUs that ``deployment.gpus == "all"`` stands for; ignored for
            CPU deployments and explicit GPU lists. Empty leaves "all" to Triton
            (one group of ``KIND_GPU`` without ``gpus``: every GPU it finds).
    """
    interface = task_interface(spec.task, embedding_dimension)
    config = mc.ModelConfig(name=spec.name, backend=BACKEND)
    config.max_batch_size = spec.batching.max_batch_size if interface.batched else 0
    config.input.extend(_tensor(t, mc.ModelInput) for t in interface.inputs)
    config.output.extend(_tensor(t, mc.ModelOutput) for t in interface.outputs)
    config.instance_group.extend(instance_groups(spec.deployment, gpu_ids))
    if interface.batched:
        config.dynamic_batching.CopyFrom(dynamic_batching(spec.batching, instances_of(config)))
    if interface.decoupled:
        config.model_transaction_policy.decoupled = True
    return config


def instance_groups(deployment: DeploymentSpec, gpu_ids: Sequence[int] = ()) -> list[mc.ModelInstanceGroup]:
    """One ``KIND_GPU`` group per GPU (data-parallel replicas), or one ``KIND_CPU`` group.

    A tensor-parallel model is one ``KIND_MODEL`` instance: its ranks span several
    devices, which the model assigns itself (``ds_triton.tensor_parallel``).
    """
    if deployment.tensor_parallel > 1:
        return [mc.ModelInstanceGroup(kind=mc.ModelInstanceGroup.KIND_MODEL, count=1)]
    count = deployment.instances_per_device
    if deployment.device == "cpu":
        return [mc.ModelInstanceGroup(kind=mc.ModelInstanceGroup.KIND_CPU, count=count)]
    ids = resolve_gpu_ids(deployment, gpu_ids)
    if not ids:
        return [mc.ModelInstanceGroup(kind=mc.ModelInstanceGroup.KIND_GPU, count=count)]
    # A group per GPU (not one group listing them all) so each GPU's replicas are
    # visible and adjustable on their own, and the model lands on the GPU Triton names.
    return [mc.ModelInstanceGroup(kind=mc.ModelInstanceGroup.KIND_GPU, count=count, gpus=[i]) for i in ids]


def resolve_gpu_ids(deployment: DeploymentSpec, detected: Sequence[int]) -> tuple[int, ...]:
    """The GPU ids a GPU deployment runs on: its explicit list, or ``detected`` for "all"."""
    if deployment.device != "gpu":
        return ()
    if deployment.gpus == "all":
        return tuple(sorted(set(detected)))
    return tuple(deployment.gpus)


def dynamic_batching(batching: BatchingSpec, instances: int) -> mc.ModelDynamicBatching:
    """Triton's dynamic batcher, with the queue policy the latency budget implies."""
    batcher = mc.ModelDynamicBatching(
        preferred_batch_size=list(batching.preferred_batch_sizes),
        max_queue_delay_microseconds=batching.max_queue_delay_us,
    )
    policy = queue_policy(batching, instances).message()
    if policy.ListFields():
        batcher.default_queue_policy.CopyFrom(policy)
    return batcher


def instances_of(config: mc.ModelConfig) -> int:
    """Instances Triton creates from ``config``, counted as each instance counts them."""
    return instance_count(json_format.MessageToDict(config, preserving_proto_field_name=True))


QUEUE_NOTE = (
    "# default_queue_policy follows batching.latency_budget_ms: requests beyond the queue or\n"
    "# its timeout (REJECT, Triton's default action) are refused with UNAVAILABLE (HTTP 503).\n"
)


def config_text(config: mc.ModelConfig) -> str:
    """The ``config.pbtxt`` text of ``config``, parsed back to prove Triton can read it."""
    body = text_format.MessageToString(config, use_short_repeated_primitives=True)
    task = "generation" if config.model_transaction_policy.decoupled else "embedding"
    notes = TASK_NOTES[task]
    if config.dynamic_batching.HasField("default_queue_policy"):
        notes += QUEUE_NOTE
    text = GENERATED_HEADER + notes + body
    reparsed = text_format.Parse(text, mc.ModelConfig())
    if reparsed != config:  # would be a protobuf bug; never write what does not round-trip
        raise RuntimeError(f"rendered config of {config.name!r} does not parse back to itself")
    return text


def interface_of(config: mc.ModelConfig) -> TaskInterface:
    """The tensor interface a config declares (for comparing with a task's)."""
    return TaskInterface(
        inputs=tuple(
            TensorSpec(t.name, mc.DataType.Name(t.data_type), tuple(t.dims), t.optional)
            for t in config.input
        ),
        outputs=tuple(
            TensorSpec(t.name, mc.DataType.Name(t.data_type), tuple(t.dims)) for t in config.output
        ),
        decoupled=config.model_transaction_policy.decoupled,
        batched=config.max_batch_size > 0,
    )


def _tensor(spec: TensorSpec, message: Any) -> Any:
    tensor = message(name=spec.name, data_type=mc.DataType.Value(spec.data_type), dims=list(spec.dims))
    if spec.optional:
        tensor.optional = True
    return tensor
