"""GPU ids as Triton will see them, without a GPU: driver answers and CUDA_VISIBLE_DEVICES."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ds_triton.repository.machine import DriverQuery, Machine, _device_nodes, detect_gpu_ids


def driver(count: int | None) -> DriverQuery:
    return lambda: None if count is None else list(range(count))


def test_all_gpus_the_driver_reports() -> None:
    assert detect_gpu_ids({}, driver(8)) == tuple(range(8))
    assert detect_gpu_ids({}, driver(0)) == ()


@pytest.mark.parametrize(
    ("visible", "expected"),
    [("0,1", (0, 1)), ("3", (0,)), ("", ()), ("1,-1,2", (0,)), ("GPU-8d1c,GPU-77aa", (0, 1)),
     ("0,1,2,3,4,5,6,7,8,9", tuple(range(4)))],
)
def test_cuda_visible_devices_renumbers_from_zero(visible: str, expected: tuple[int, ...]) -> None:
    assert detect_gpu_ids({"CUDA_VISIBLE_DEVICES": visible}, driver(4)) == expected


def test_device_nodes_when_nvidia_smi_is_missing(tmp_path: Path) -> None:
    for name in ("nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm", "nvidia-modeset", "null"):
        (tmp_path / name).touch()
    assert _device_nodes(tmp_path) == [0, 1]
    assert _device_nodes(tmp_path / "missing") == []


def test_gpu_ids_agree_with_the_cuda_runtime() -> None:
    # An independent source: the CUDA runtime torch links (not nvidia-smi, not /dev).
    import torch

    assert len(Machine.detect().gpu_ids) == torch.cuda.device_count()


def test_cores_follow_the_affinity_mask_a_process_is_given() -> None:
    # A child pinned to one core (as taskset or a cpuset pins it) sees one core, whatever the host has.
    code = "from ds_triton.repository.machine import Machine; print(Machine.detect().cores)"
    one_core = {min(os.sched_getaffinity(0))}
    pinned = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True,
        preexec_fn=lambda: os.sched_setaffinity(0, one_core),
    )
    assert pinned.stdout.strip() == "1"
    nproc = subprocess.run(["nproc"], capture_output=True, text=True, check=True).stdout
    assert 1 <= Machine.detect().cores <= int(nproc)  # a CPU quota may lower it further
