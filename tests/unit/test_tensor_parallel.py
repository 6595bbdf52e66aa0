"""Tensor parallel without processes: the spec key, the render, the check, rank devices, the channel.

The real thing (a leader stub and its worker over gloo, served by tritonserver)
is tests/server/test_tensor_parallel.py.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from tritonclient.grpc import model_config_pb2 as mc

from ds_triton.errors import SpecError
from ds_triton.repository.checks import Subject, run_checks
from ds_triton.repository.layout import ModelFolder
from ds_triton.repository.machine import Machine
from ds_triton.repository.render import render_config
from ds_triton.server_process.procfs import children_of
from ds_triton.spec import ModelSpec
from ds_triton.tensor_parallel import channel
from ds_triton.tensor_parallel.devices import NotEnoughGpus, rank_devices, threads_per_rank
from ds_triton.tensor_parallel.leader import start_tensor_parallel
from ds_triton.tensor_parallel.messages import Forward, Stop


def spec(task: str = "generation", **deployment: Any) -> ModelSpec:
    return ModelSpec.from_dict({"name": "big", "task": task, "checkpoint": "/ckpt", "deployment": deployment})


def test_tensor_parallel_is_validated() -> None:
    assert spec(tensor_parallel=4).deployment.tensor_parallel == 4
    with pytest.raises(SpecError, match=r"deployment\.tensor_parallel must be >= 1, got 0"):
        spec(tensor_parallel=0)
    with pytest.raises(SpecError, match="instances_per_device must be 1"):
        spec(tensor_parallel=2, instances_per_device=2)
    with pytest.raises(SpecError, match="only task 'generation' is sharded"):
        spec("embedding", tensor_parallel=2)


@pytest.mark.parametrize("device", ["cpu", "gpu"])
def test_renders_to_one_kind_model_instance(device: str) -> None:
    config = render_config(spec(device=device, tensor_parallel=2), gpu_ids=[0, 1, 2, 3])
    assert [(g.kind, g.count, list(g.gpus)) for g in config.instance_group] == [
        (mc.ModelInstanceGroup.KIND_MODEL, 1, [])
    ]


def gpu_problems(model: ModelSpec, machine: Machine) -> list[str]:
    """What ``ds-triton check`` says about GPUs for ``model`` rendered on ``machine``."""
    subject = Subject(ModelFolder(Path("/repo/big")), machine, on_disk=False, spec=model)
    subject.config = render_config(model, gpu_ids=machine.gpu_ids)
    run_checks(subject)
    return [str(p) for p in subject.problems if p.kind == "gpu"]


def test_check_refuses_more_ranks_than_gpus() -> None:
    model = spec(device="gpu", tensor_parallel=4)
    assert gpu_problems(model, Machine(cores=8, gpu_ids=(0, 1))) == [
        "big/1/model.json: [gpu] deployment.tensor_parallel is 4, but 2 GPU(s) are visible here "
        "(GPUs: 0, 1); one rank runs per GPU, so lower tensor_parallel or expose more GPUs "
        "(CUDA_VISIBLE_DEVICES)"
    ]
    assert gpu_problems(model, Machine(cores=8, gpu_ids=(0, 1, 2, 3))) == []


def test_rank_devices() -> None:
    assert rank_devices(spec(device="cpu", tensor_parallel=3).deployment, 3, []) == ["cpu"] * 3
    everything = spec(device="gpu", tensor_parallel=2).deployment
    assert rank_devices(everything, 2, [0, 1, 2]) == ["cuda:0", "cuda:1"]
    listed = spec(device="gpu", gpus=[3, 1], tensor_parallel=2).deployment
    assert rank_devices(listed, 2, [0, 1, 2, 3]) == ["cuda:3", "cuda:1"]
    with pytest.raises(NotEnoughGpus, match=r"offers 1 usable GPU\(s\) \(3, 1; GPU 3 not visible here"):
        rank_devices(listed, 2, [0, 1])
    assert threads_per_rank(spec(device="cpu", threads_per_instance=3, tensor_parallel=2).deployment, 2) == 3


def test_load_refuses_more_ranks_than_gpus_before_starting_anything(tmp_path: Any) -> None:
    model = spec(device="gpu", tensor_parallel=2)
    children_before = _children()
    with pytest.raises(NotEnoughGpus, match="tensor_parallel is 2, but 0 GPU"):
        start_tensor_parallel(model, tmp_path)
    assert _children() == children_before


def test_channel_round_trip_and_end_of_file() -> None:
    read, write = os.pipe()
    message = Forward("decode", ("<cache>", 3, True), {"every_position": False}, (4, 96), (), 2)
    channel.send(write, message)
    channel.send(write, Stop())
    assert channel.receive(read) == message
    assert channel.receive(read) == Stop()
    os.close(write)
    with pytest.raises(channel.ChannelClosed):
        channel.receive(read)
    os.close(read)


def _children() -> set[int]:
    """This process's children, to show that a refused load started none."""
    return {stat.pid for stat in children_of(os.getpid())}
