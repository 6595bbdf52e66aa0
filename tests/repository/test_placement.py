"""An instance places itself on the device Triton assigns it (model_instance_device_id)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from google.protobuf import json_format

from ds_triton import devices
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


def cpu_spec(instances: int, threads: int | None = None) -> ModelSpec:
    return ModelSpec.from_dict({
        "name": "gen", "task": "generation", "checkpoint": "/ckpt",
        "deployment": {"device": "cpu", "instances_per_device": instances, "threads_per_instance": threads},
    })


@pytest.mark.parametrize(
    ("cores", "instances", "pinned", "threads"),
    [(8, 2, None, 4), (8, 3, None, 2), (2, 2, None, 1), (2, 5, None, 1), (8, 1, None, 8), (8, 2, 3, 3)],
)
def test_cpu_instances_share_the_cores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cores: int, instances: int, pinned: int | None,
    threads: int,
) -> None:
    # The process may run on `cores` cores (its affinity mask); Triton starts `instances`.
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)))
    monkeypatch.setattr(devices, "PROC_CGROUP", tmp_path / "no-cgroup")  # no quota
    context = InstanceContext.from_args(instance_args(tmp_path, cpu_spec(instances, pinned), "CPU", 0, 0))
    assert (context.placement.device, context.placement.threads) == ("cpu", threads)


def cgroup_tree(root: Path, relative: str, files: dict[str, str]) -> Path:
    """A fake /sys/fs/cgroup holding ``files`` (path -> text); returns its /proc/self/cgroup."""
    for path, text in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    proc = root / "proc-self-cgroup"
    proc.write_text(relative)
    return proc


@pytest.mark.parametrize(
    ("relative", "files", "quota"),
    [
        ("0::/pod/app\n", {"pod/app/cpu.max": "150000 100000\n"}, 1.5),
        ("0::/pod/app\n", {"pod/app/cpu.max": "max 100000\n", "pod/cpu.max": "300000 100000\n"}, 3.0),
        ("0::/\n", {"cpu.max": "max 100000\n"}, None),
        ("0::/\n", {}, None),
        ("4:cpu,cpuacct:/docker/abc\n0::/\n", {"cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "200000\n",
                                                  "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000"},
         2.0),
        ("1:cpu:/\n", {"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
    ],
    ids=["v2", "v2-parent-tighter", "v2-unlimited", "v2-no-controller", "v1", "v1-unlimited"],
)
def test_cgroup_cpu_quota(tmp_path: Path, relative: str, files: dict[str, str], quota: float | None) -> None:
    proc = cgroup_tree(tmp_path, relative, files)
    assert devices.cgroup_cpu_quota(tmp_path, proc) == quota


def test_a_cpu_quota_caps_the_cores_of_a_container(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Docker --cpus=2.5 on a 64-core host: the affinity mask has 64 cores, the quota 2.5 CPUs.
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)))
    proc = cgroup_tree(tmp_path, "0::/\n", {"cpu.max": "250000 100000\n"})
    assert devices.available_cores(tmp_path, proc) == 3
    assert devices.threads_per_instance(devices.available_cores(tmp_path, proc), 3, None) == 1
