"""Rendering specs to Triton ModelConfig: instance groups per GPU count, batching, decoupling."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from ds_triton.repository.render import GENERATED_HEADER, config_text, render_config
from ds_triton.spec import ModelSpec

KIND_CPU = mc.ModelInstanceGroup.KIND_CPU
KIND_GPU = mc.ModelInstanceGroup.KIND_GPU


def embedding_spec(**deployment: Any) -> ModelSpec:
    return ModelSpec.from_dict(
        {"name": "emb", "task": "embedding", "checkpoint": "/ckpt", "deployment": deployment}
    )


def generation_spec(**deployment: Any) -> ModelSpec:
    return ModelSpec.from_dict(
        {"name": "gen", "task": "generation", "checkpoint": "/ckpt", "deployment": deployment}
    )


def groups(config: mc.ModelConfig) -> list[tuple[int, int, list[int]]]:
    return [(g.kind, g.count, list(g.gpus)) for g in config.instance_group]


def test_cpu_is_one_kind_cpu_group_whatever_gpus_exist() -> None:
    spec = embedding_spec(device="cpu", instances_per_device=2)
    for gpu_ids in ([], [0], list(range(8))):
        config = render_config(spec, embedding_dimension=8, gpu_ids=gpu_ids)
        assert groups(config) == [(KIND_CPU, 2, [])]


@pytest.mark.parametrize("gpu_count", [1, 2, 8])
def test_gpus_all_renders_one_group_per_gpu(gpu_count: int) -> None:
    spec = embedding_spec(device="gpu", gpus="all", instances_per_device=3)
    config = render_config(spec, embedding_dimension=8, gpu_ids=range(gpu_count))
    assert groups(config) == [(KIND_GPU, 3, [i]) for i in range(gpu_count)]


def test_gpus_all_without_gpus_leaves_all_to_triton() -> None:
    config = render_config(embedding_spec(device="gpu", gpus="all"), embedding_dimension=8)
    assert groups(config) == [(KIND_GPU, 1, [])]


def test_explicit_gpu_list_ignores_the_machine() -> None:
    spec = generation_spec(device="gpu", gpus=[2, 5], instances_per_device=1)
    for gpu_ids in ([], [0], list(range(8))):
        assert groups(render_config(spec, gpu_ids=gpu_ids)) == [(KIND_GPU, 1, [2]), (KIND_GPU, 1, [5])]


def test_render_is_deterministic_for_a_gpu_count() -> None:
    spec = embedding_spec(device="gpu", gpus="all", instances_per_device=2)
    texts = {config_text(render_config(spec, embedding_dimension=8, gpu_ids=ids)) for ids in
             (range(8), [7, 6, 5, 4, 3, 2, 1, 0], list(range(8)))}
    assert len(texts) == 1


def test_embedding_interface_and_dynamic_batching() -> None:
    spec = ModelSpec.from_dict({
        "name": "emb", "task": "embedding", "checkpoint": "/ckpt",
        "batching": {"max_batch_size": 32, "preferred_batch_sizes": [8, 32], "max_queue_delay_us": 500,
                     "max_queue_size": 100, "queue_timeout_us": 7000},
    })
    config = render_config(spec, embedding_dimension=48)
    assert (config.name, config.backend, config.max_batch_size) == ("emb", "python", 32)
    assert [(t.name, t.data_type, list(t.dims)) for t in config.input] == [("text", mc.TYPE_STRING, [1])]
    assert [(t.name, t.data_type, list(t.dims)) for t in config.output] == [
        ("embedding", mc.TYPE_FP32, [48]),
        ("truncated", mc.TYPE_BOOL, [1]),
    ]
    batching = config.dynamic_batching
    assert list(batching.preferred_batch_size) == [8, 32]
    assert batching.max_queue_delay_microseconds == 500
    policy = batching.default_queue_policy
    assert (policy.max_queue_size, policy.default_timeout_microseconds) == (100, 7000)
    assert policy.timeout_action == mc.ModelQueuePolicy.REJECT
    assert not config.model_transaction_policy.decoupled


def batching_spec(batching: dict[str, Any], **deployment: Any) -> ModelSpec:
    return ModelSpec.from_dict({"name": "emb", "task": "embedding", "checkpoint": "/ckpt",
                                "batching": batching, "deployment": deployment})


def test_queue_policy_is_derived_from_the_latency_budget() -> None:
    spec = batching_spec({"latency_budget_ms": 80, "max_batch_size": 32, "preferred_batch_sizes": [32]},
                         device="cpu", instances_per_device=3)
    policy = render_config(spec, embedding_dimension=8).dynamic_batching.default_queue_policy
    # Half the budget in the queue; one preferred batch per instance queued.
    assert policy.default_timeout_microseconds == 40_000
    assert policy.timeout_action == mc.ModelQueuePolicy.REJECT
    assert policy.allow_timeout_override
    assert policy.max_queue_size == 3 * 32


def test_the_queue_grows_with_the_instances_of_every_gpu() -> None:
    spec = batching_spec({"latency_budget_ms": 50, "max_batch_size": 16, "preferred_batch_sizes": [8, 16]},
                         device="gpu", gpus="all", instances_per_device=2)
    for gpus, queue in ((4, 4 * 2 * 8), (1, 2 * 8)):
        config = render_config(spec, embedding_dimension=8, gpu_ids=range(gpus))
        assert config.dynamic_batching.default_queue_policy.max_queue_size == queue


def test_without_preferred_sizes_a_full_batch_per_instance() -> None:
    spec = batching_spec({"latency_budget_ms": 100, "max_batch_size": 12, "preferred_batch_sizes": []},
                         instances_per_device=2)
    policy = render_config(spec, embedding_dimension=8).dynamic_batching.default_queue_policy
    assert policy.max_queue_size == 2 * 12


def test_explicit_queue_settings_replace_the_derived_ones() -> None:
    spec = batching_spec({"latency_budget_ms": 100, "max_queue_size": 7, "queue_timeout_us": 9000,
                          "allow_timeout_override": False})
    policy = render_config(spec, embedding_dimension=8).dynamic_batching.default_queue_policy
    assert (policy.max_queue_size, policy.default_timeout_microseconds) == (7, 9000)
    assert not policy.allow_timeout_override


def test_no_latency_budget_means_no_queue_policy() -> None:
    # The default: a queue policy would turn off Triton's batch prefetching.
    config = render_config(batching_spec({}), embedding_dimension=8)
    assert not config.dynamic_batching.HasField("default_queue_policy")
    assert "queue_policy" not in config_text(config)


def test_generation_is_decoupled_unbatched_with_the_vllm_interface() -> None:
    config = render_config(generation_spec())
    assert config.model_transaction_policy.decoupled
    assert config.max_batch_size == 0
    assert not config.HasField("dynamic_batching")
    names = {t.name: (t.data_type, list(t.dims), t.optional) for t in config.input}
    assert names["text_input"] == (mc.TYPE_STRING, [1], False)
    assert names["sampling_parameters"] == (mc.TYPE_STRING, [1], True)
    assert names["stream"] == (mc.TYPE_BOOL, [1], True)
    assert config.output[0].name == "text_output"


def test_embedding_needs_the_hidden_size() -> None:
    with pytest.raises(ValueError, match="hidden size"):
        render_config(embedding_spec())


def test_text_parses_back_with_tritons_schema_and_starts_with_the_header() -> None:
    config = render_config(embedding_spec(device="gpu", gpus="all"), embedding_dimension=8, gpu_ids=[0, 1])
    text = config_text(config)
    assert text.startswith(GENERATED_HEADER)
    assert text_format.Parse(text, mc.ModelConfig()) == config
