"""Where a model instance runs and how many CPU threads it may use.

Triton tells each instance its kind (CPU/GPU) and device id; on CPU the
instances of a model share the machine's cores, so each gets
``cores // instances`` intra-op threads unless the spec pins a number.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")


@dataclass(frozen=True)
class Placement:
    """The torch device of one instance and its intra-op thread budget."""

    device: str
    threads: int

    @property
    def is_cuda(self) -> bool:
        return self.device.startswith("cuda")

    @property
    def device_index(self) -> int:
        """The CUDA device number (``cuda:3`` -> 3; 0 for a bare ``cuda`` or CPU)."""
        _, _, index = self.device.partition(":")
        return int(index) if index else 0


def available_cores(cgroup_root: Path | None = None, proc_cgroup: Path | None = None) -> int:
    """Cores this process can keep busy: its CPU affinity, capped by a cgroup CPU quota.

    Affinity (``taskset``, cpusets) says which cores the process may run on; a
    CPU quota (Docker ``--cpus``, a Kubernetes CPU limit) says how much time it
    may spend on them. A container limited to 2 CPUs on a 64-core host has 64
    cores in its affinity mask and is throttled past 2, so the quota wins.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        cores = os.cpu_count() or 1
    quota = cgroup_cpu_quota(cgroup_root, proc_cgroup)
    return max(1, min(cores, math.ceil(quota))) if quota is not None else cores


def cgroup_cpu_quota(cgroup_root: Path | None = None, proc_cgroup: Path | None = None) -> float | None:
    """CPUs this process's cgroup may use (quota / period), or None when unlimited.

    cgroup v2: ``cpu.max`` of the process's cgroup and of its parents (the
    tightest wins); cgroup v1: ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` of
    its ``cpu`` cgroup. A handful of small file reads.
    """
    cgroup_root = cgroup_root or CGROUP_ROOT
    try:
        lines = (proc_cgroup or PROC_CGROUP).read_text().splitlines()
    except OSError:
        return None
    quotas: list[float] = []
    for line in lines:
        _, controllers, relative = line.split(":", 2) if line.count(":") >= 2 else ("", "", "")
        relative = relative.lstrip("/")
        if not controllers:  # v2: the one unified hierarchy
            folder = cgroup_root / relative
            for candidate in (folder, *folder.parents):
                quotas.append(_read_v2(candidate / "cpu.max") or 0.0)
                if candidate == cgroup_root:
                    break
        elif "cpu" in controllers.split(","):
            mount = cgroup_root / controllers
            if not mount.is_dir():
                mount = cgroup_root / "cpu"
            # Inside a container the process's own cgroup is often the mount itself.
            for folder in (mount / relative, mount):
                quotas.append(_read_v1(folder) or 0.0)
    limits = [q for q in quotas if q > 0]
    return min(limits) if limits else None


def _read_v2(path: Path) -> float | None:
    try:
        quota, _, period = path.read_text().strip().partition(" ")
    except OSError:
        return None
    if not quota.isdigit() or not period.isdigit() or int(period) == 0:
        return None  # "max": no limit
    return int(quota) / int(period)


def _read_v1(folder: Path) -> float | None:
    try:
        quota = int((folder / "cpu.cfs_quota_us").read_text())
        period = int((folder / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None  # -1: no limit


def threads_per_instance(cores: int, instances: int, pinned: int | None) -> int:
    """Intra-op threads of each of ``instances`` CPU instances sharing ``cores``.

    The spec's ``threads_per_instance`` when it pins one, else an even share,
    at least one thread each.
    """
    return pinned or max(1, cores // max(1, instances))


def instance_count(model_config: dict[str, Any]) -> int:
    """Total instances Triton creates from a parsed ``model_config`` JSON."""
    total = 0
    for group in model_config.get("instance_group", []):
        count = int(group.get("count", 1))
        gpus = group.get("gpus") or []
        total += count * max(1, len(gpus)) if group.get("kind") == "KIND_GPU" else count
    return max(total, 1)


def resolve_placement(
    instance_kind: str, device_id: int, instances: int, pinned_threads: int | None
) -> Placement:
    """Placement for one instance from Triton's ``model_instance_kind``/``device_id``."""
    if instance_kind.upper() == "GPU":
        return Placement(device=f"cuda:{device_id}", threads=pinned_threads or 1)
    return Placement(device="cpu", threads=threads_per_instance(available_cores(), instances, pinned_threads))
