"""Which device each rank of a tensor-parallel instance runs on.

Rank ``r`` runs on the ``r``-th GPU of ``deployment.gpus`` (``"all"``: the GPUs
CUDA exposes, ``0..n-1``), or on the CPU for a CPU deployment. The same rule
answers ``ds-triton check`` (against the GPUs the machine shows) and the load
(against ``torch.cuda.device_count()``), so both refuse the same specs with the
same message.
"""

from __future__ import annotations

from collections.abc import Sequence

from ds_triton.devices import available_cores
from ds_triton.errors import ModelLoadError
from ds_triton.spec import DeploymentSpec


class NotEnoughGpus(ModelLoadError):
    """``tensor_parallel`` asks for more GPUs than the deployment may use here."""


def rank_devices(deployment: DeploymentSpec, size: int, visible_gpus: Sequence[int]) -> list[str]:
    """The torch device of each of the ``size`` ranks.

    Raises:
        NotEnoughGpus: fewer usable GPUs than ranks; the message says how many of each.
    """
    if deployment.device == "cpu":
        return ["cpu"] * size
    listed = visible_gpus if deployment.gpus == "all" else deployment.gpus
    usable = [g for g in listed if g in visible_gpus]
    if len(usable) < size:
        raise NotEnoughGpus(gpu_shortage(deployment, size, visible_gpus))
    return [f"cuda:{gpu}" for gpu in usable[:size]]


def gpu_shortage(deployment: DeploymentSpec, size: int, visible_gpus: Sequence[int]) -> str:
    """Why ``size`` ranks do not fit (the message of check and of the load)."""
    seen = ", ".join(map(str, visible_gpus)) or "none"
    if deployment.gpus == "all":
        return (
            f"deployment.tensor_parallel is {size}, but {len(visible_gpus)} GPU(s) are visible "
            f"here (GPUs: {seen}); one rank runs per GPU, so lower tensor_parallel or expose "
            "more GPUs (CUDA_VISIBLE_DEVICES)"
        )
    missing = [g for g in deployment.gpus if g not in visible_gpus]
    listed = ", ".join(map(str, deployment.gpus))
    detail = f"; GPU {', '.join(map(str, missing))} not visible here (GPUs: {seen})" if missing else ""
    return (
        f"deployment.tensor_parallel is {size}, but deployment.gpus offers "
        f"{len(deployment.gpus) - len(missing)} usable GPU(s) ({listed}{detail}); one rank runs "
        "per GPU"
    )


def threads_per_rank(deployment: DeploymentSpec, size: int) -> int:
    """Intra-op threads of each rank: the spec's, else the cores shared among the ranks on CPU."""
    if deployment.threads_per_instance is not None:
        return deployment.threads_per_instance
    if deployment.device != "cpu":
        return 1
    return max(1, available_cores() // size)


def visible_cuda_gpus() -> list[int]:
    """The GPU ids torch sees in this process (``0..n-1``)."""
    import torch

    return list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
