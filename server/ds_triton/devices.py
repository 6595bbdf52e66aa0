"""Where a model instance runs and how many CPU threads it may use.

Triton tells each instance its kind (CPU/GPU) and device id; on CPU the
instances of a model share the machine's cores, so each gets
``cores // instances`` intra-op threads unless the spec pins a number.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Placement:
    """The torch device of one instance and its intra-op thread budget."""

    device: str
    threads: int

    @property
    def is_cuda(self) -> bool:
        return self.device.startswith("cuda")


def available_cores() -> int:
    """Cores this process may run on (respects CPU affinity and cgroup-free pinning)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def instance_count(model_config: dict[str, Any]) -> int:
    """Total instances Triton creates from a parsed ``model_config`` JSON."""
    total = 0
    for group in model_config.get("instance_group", []):
        count = int(group.get("count", 1))
        gpus = group.get("gpus") or []
        total += count * max(1, len(gpus)) if group.get("kind") == "KIND_GPU" else count
    return max(total, 1)


def resolve_placement(
    instance_kind: str, device_id: int, instances: int, threads_per_instance: int | None
) -> Placement:
    """Placement for one instance from Triton's ``model_instance_kind``/``device_id``."""
    if instance_kind.upper() == "GPU":
        return Placement(device=f"cuda:{device_id}", threads=threads_per_instance or 1)
    threads = threads_per_instance or max(1, available_cores() // max(1, instances))
    return Placement(device="cpu", threads=threads)
