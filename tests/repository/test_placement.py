"""An instance places itself on the device Triton assigns it (model_instance_device_id)."""

from __future__ import annotations

import json
from pathlib import Path

from google.protobuf import json_format

from ds_triton.backend.context import InstanceContext
from ds_triton.devices import instance_count
from ds_triton.repository.render import render_config
from ds_triton.spec import ModelSpec


def instance_args(
    tmp_path: Path, spec: ModelSpec, kind: str, device_id: int, gpu_count: int
) -> dict[str, str]:
    """The ``args`` Triton passes to ``initialize`` of one instance of ``spec``."""
    version_dir = tmp_path / spec.name / "1"
    version_dir.mkdir(parents=True)
    (version_dir / "model.json").write_text(spec.dumps())
    config = render_config(spec, gpu_ids=range(gpu_count))
    return {
        "model_name": spec.name,
        "model_instance_name": f"{spec.name}_{device_id}_0",
        "model_instance_kind": kind,
        "model_instance_device_id": str(device_id),
        "model_repository": str(tmp_path / spec.name),
        "model_version": "1",
        "model_config": json.dumps(json_format.MessageToDict(config, preserving_proto_field_name=True)),
    }


def gpu_spec(instances: int) -> ModelSpec:
    return ModelSpec.from_dict({
        "name": "gen", "task": "generation", "checkpoint": "/ckpt",
        "deployment": {"device": "gpu", "gpus": "all", "instances_per_device": instances},
    })


def test_gpu_instance_lands_on_the_gpu_triton_names(tmp_path: Path) -> None:
    context = InstanceContext.from_args(instance_args(tmp_path, gpu_spec(2), "GPU", 5, gpu_count=8))
    assert context.placement.device == "cuda:5"
    assert context.placement.is_cuda


def test_instance_count_of_per_gpu_groups(tmp_path: Path) -> None:
    args = instance_args(tmp_path, gpu_spec(2), "GPU", 0, gpu_count=8)
    assert instance_count(json.loads(args["model_config"])) == 16


def test_cpu_instances_share_the_cores(tmp_path: Path) -> None:
    spec = ModelSpec.from_dict({
        "name": "gen", "task": "generation", "checkpoint": "/ckpt",
        "deployment": {"device": "cpu", "instances_per_device": 2, "threads_per_instance": 1},
    })
    context = InstanceContext.from_args(instance_args(tmp_path, spec, "CPU", 0, gpu_count=0))
    assert (context.placement.device, context.placement.threads) == ("cpu", 1)
