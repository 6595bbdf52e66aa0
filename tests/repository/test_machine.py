"""GPU ids as Triton will see them, without a GPU: driver answers and CUDA_VISIBLE_DEVICES."""

from __future__ import annotations

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


def test_this_machine_is_consistent_with_dev() -> None:
    machine = Machine.detect()
    assert machine.cores >= 1
    assert bool(machine.gpu_ids) == Path("/dev/nvidia0").exists()
