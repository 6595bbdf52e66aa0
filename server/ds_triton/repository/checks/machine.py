"""The machine: GPU ids the config names, tensor-parallel ranks, and CPU threads against the cores."""

from __future__ import annotations

from tritonclient.grpc import model_config_pb2 as mc

from ds_triton.devices import threads_per_instance
from ds_triton.repository.checks.subject import SPEC_FILE, Subject
from ds_triton.tensor_parallel.devices import NotEnoughGpus, rank_devices


def check_gpus(model: Subject) -> None:
    assert model.config is not None
    have = model.machine.gpu_ids
    for index, group in enumerate(model.config.instance_group):
        if group.kind != mc.ModelInstanceGroup.KIND_GPU:
            continue
        if not have:
            model.report(
                "gpu", f"instance_group[{index}] is KIND_GPU but this machine has no GPU",
                field="instance_group",
            )
            continue
        missing = [g for g in group.gpus if g not in have]
        if missing:
            model.report(
                "gpu",
                f"instance_group[{index}] names GPU {', '.join(map(str, missing))}, which "
                f"does not exist here (GPUs: {', '.join(map(str, have))})",
                field="instance_group",
            )


def check_tensor_parallel(model: Subject) -> None:
    """A tensor-parallel GPU model needs one GPU per rank (its load refuses it the same way)."""
    assert model.spec is not None
    deployment = model.spec.deployment
    if deployment.tensor_parallel > 1 and deployment.device == "gpu":
        try:
            rank_devices(deployment, deployment.tensor_parallel, model.machine.gpu_ids)
        except NotEnoughGpus as exc:
            model.report("gpu", str(exc), where=SPEC_FILE)


def check_cores(model: Subject) -> None:
    assert model.config is not None
    cpu_groups = [g for g in model.config.instance_group if g.kind == mc.ModelInstanceGroup.KIND_CPU]
    instances = sum(max(1, g.count) for g in cpu_groups)
    if not instances:
        return
    cores = model.machine.cores
    pinned = model.spec.deployment.threads_per_instance if model.spec is not None else None
    threads = threads_per_instance(cores, instances, pinned)  # the instance's own rule
    if instances * threads > cores:
        source = "deployment.threads_per_instance" if pinned else "at least 1 thread each"
        model.report(
            "cores",
            f"{instances} CPU instance(s) x {threads} thread(s) ({source}) = "
            f"{instances * threads} threads > {cores} cores on this machine; lower "
            "deployment.instances_per_device or threads_per_instance",
            field="instance_group",
        )
