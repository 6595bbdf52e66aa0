"""The torch.distributed group of a tensor-parallel instance, and DeepSpeed's view of it.

The leader (rank 0) owns a ``TCPStore`` on a port the kernel picks and passes
that port to its workers, so no port is guessed. The group's backend is NCCL
between GPUs and gloo on CPU.

DeepSpeed's CPU accelerator would replace gloo's all-reduce with its own
shared-memory kernel (``deepspeed_shm_comm``): it JIT-compiles a C++ op in the
first process that loads (minutes on a small machine), keeps its buffers in
``/dev/shm`` regions named after the rendezvous, and its fp16/bf16 paths need
AVX-512. We turn it off, so the all-reduces of AutoTP's sharded layers go
through the process group like every other collective.
"""

from __future__ import annotations

import datetime
import os
from typing import Any

# A worker waits for commands on a pipe, never in a collective, so this bounds only
# a collective whose peer hangs without dying (a dead peer is seen at once).
COLLECTIVE_TIMEOUT = datetime.timedelta(minutes=10)
# Loading a large checkpoint on every rank may take this long before the group forms.
RENDEZVOUS_TIMEOUT = datetime.timedelta(minutes=15)

SHM_COMM_OP = "deepspeed_shm_comm"


def backend_for(device: str) -> str:
    return "nccl" if device.startswith("cuda") else "gloo"


def leader_store() -> Any:
    """The rendezvous store, listening on 127.0.0.1 at a port chosen by the kernel."""
    import torch.distributed as dist

    return dist.TCPStore(
        "127.0.0.1", 0, is_master=True, wait_for_workers=False, timeout=RENDEZVOUS_TIMEOUT
    )


def worker_store(port: int) -> Any:
    import torch.distributed as dist

    return dist.TCPStore("127.0.0.1", port, is_master=False, timeout=RENDEZVOUS_TIMEOUT)


def join_group(store: Any, rank: int, world_size: int, device: str) -> None:
    """Join the instance's process group as ``rank`` and set up DeepSpeed to use it."""
    import torch
    import torch.distributed as dist

    # DeepSpeed's AutoTP calls ``set_device(LOCAL_RANK)``: make that this rank's GPU.
    cuda = device.startswith("cuda")
    os.environ["LOCAL_RANK"] = str(torch.device(device).index or 0) if cuda else str(rank)
    os.environ["RANK"] = str(rank)
    os.environ["WORLD_SIZE"] = str(world_size)
    os.environ["LOCAL_SIZE"] = str(world_size)
    if cuda:
        torch.cuda.set_device(torch.device(device))
    disable_shm_allreduce()
    dist.init_process_group(
        backend_for(device), store=store, rank=rank, world_size=world_size, timeout=COLLECTIVE_TIMEOUT
    )


def disable_shm_allreduce() -> None:
    """Keep DeepSpeed from building and using its CPU shared-memory all-reduce.

    DeepSpeed decides once per process from ``deepspeed.ops.__compatible_ops__``,
    a dict it probes on first access and keeps (edits persist by design), when
    its communication backend is created.
    """
    import deepspeed.ops

    compatible = deepspeed.ops.__compatible_ops__
    if SHM_COMM_OP in compatible:
        compatible[SHM_COMM_OP] = False


def leave_group() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()
