"""What this machine offers a model repository: CPU cores and GPU ids.

GPU ids are the ones Triton will see: CUDA numbers the visible devices from 0,
so ``CUDA_VISIBLE_DEVICES`` narrows the list. Detection never initialises CUDA
(it asks ``nvidia-smi``, else counts ``/dev/nvidiaN`` nodes), so it is cheap
and safe in a process that later forks a server.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ds_triton.devices import available_cores

_DEVICE_NODE = re.compile(r"nvidia(\d+)")
NVIDIA_SMI_TIMEOUT_S = 10.0

# Returns the GPU indices the driver reports, or None when it cannot tell.
DriverQuery = Callable[[], list[int] | None]


@dataclass(frozen=True)
class Machine:
    """Cores and GPU ids a repository is checked and rendered against."""

    cores: int
    gpu_ids: tuple[int, ...] = ()

    @classmethod
    def detect(cls) -> Machine:
        """This machine, as the server started from this process would see it."""
        return cls(cores=available_cores(), gpu_ids=detect_gpu_ids())

    def describe(self) -> str:
        gpus = ", ".join(map(str, self.gpu_ids)) if self.gpu_ids else "none"
        return f"{self.cores} CPU cores, GPUs: {gpus}"


def detect_gpu_ids(
    environ: Mapping[str, str] | None = None,
    query_driver: DriverQuery | None = None,
) -> tuple[int, ...]:
    """GPU ids ``0..n-1`` that CUDA (and so Triton) will expose to this process."""
    env = os.environ if environ is None else environ
    found = (query_driver or _query_nvidia_smi)()
    if found is None:
        found = _device_nodes(Path("/dev"))
    count = len(found)
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        count = min(count, _visible_count(visible))
    return tuple(range(count))


def _visible_count(visible: str) -> int:
    """Devices CUDA keeps from ``CUDA_VISIBLE_DEVICES``: entries up to the first invalid one."""
    count = 0
    for entry in visible.split(","):
        entry = entry.strip()
        # CUDA stops enumerating at the first entry that is neither an index nor a UUID.
        if not entry or not (entry.isdigit() or entry.startswith(("GPU-", "MIG-"))):
            break
        count += 1
    return count


def _query_nvidia_smi() -> list[int] | None:
    binary = shutil.which("nvidia-smi")
    if binary is None:
        return None
    try:
        result = subprocess.run(
            [binary, "--query-gpu=index", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=NVIDIA_SMI_TIMEOUT_S, check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if result.returncode != 0:
        return None
    return [int(line) for line in result.stdout.split() if line.strip().isdigit()]


def _device_nodes(dev: Path) -> list[int]:
    try:
        names = [p.name for p in dev.iterdir()]
    except OSError:
        return []
    return sorted(int(m.group(1)) for n in names if (m := _DEVICE_NODE.fullmatch(n)))
