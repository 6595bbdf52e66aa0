"""torch, CUDA and the driver agree; DeepSpeed's inference op can be built.

DeepSpeed JIT-builds its transformer-inference op (kernel injection) through
torch's cpp_extension on first use: that needs ``ninja`` and an ``nvcc`` whose
CUDA matches torch's. On a CPU-only machine the op does not exist, so the check
does not apply.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ds_triton.doctor.result import Check, Verdict, failed, passed

NAME_TORCH = "torch/CUDA/driver"
NAME_DEEPSPEED = "DeepSpeed inference op"


@dataclass(frozen=True)
class Accelerator:
    """What torch was built for and what this machine's driver offers."""

    torch_version: str
    torch_cuda: str | None  # e.g. "12.4"; None for a CPU build
    cuda_available: bool
    gpu_count: int
    driver_version: str | None  # None: no NVIDIA driver
    driver_cuda: str | None  # the newest CUDA the driver supports, e.g. "12.6"

    @classmethod
    def detect(cls) -> Accelerator:
        import torch

        driver, driver_cuda = _nvidia_smi()
        cuda = torch.version.cuda
        available = bool(cuda) and torch.cuda.is_available()
        return cls(
            torch_version=torch.__version__,
            torch_cuda=cuda,
            cuda_available=available,
            gpu_count=torch.cuda.device_count() if available else 0,
            driver_version=driver,
            driver_cuda=driver_cuda,
        )


def _nvidia_smi() -> tuple[str | None, str | None]:
    if shutil.which("nvidia-smi") is None:
        return None, None
    try:
        out = subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None, None
    driver = re.search(r"Driver Version:\s*([\d.]+)", out)
    cuda = re.search(r"CUDA Version:\s*([\d.]+)", out)
    return (driver.group(1) if driver else None), (cuda.group(1) if cuda else None)


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:2])


def judge_torch(acc: Accelerator) -> Check:
    if acc.torch_cuda is None:
        if acc.driver_version is not None:
            return failed(NAME_TORCH, f"torch {acc.torch_version} is a CPU build but this machine has an "
                                      f"NVIDIA driver ({acc.driver_version}): GPU models cannot load",
                          "install a CUDA build of torch that the driver supports, then deepspeed again")
        return passed(NAME_TORCH, f"torch {acc.torch_version} (CPU build), no NVIDIA driver: CPU serving")
    torch = f"torch {acc.torch_version}"
    if acc.driver_version is None:
        return failed(NAME_TORCH, f"{torch} is built for CUDA {acc.torch_cuda} but no NVIDIA driver answers",
                      "install the NVIDIA driver, or a CPU build of torch for CPU-only serving")
    if acc.driver_cuda and _version(acc.driver_cuda) < _version(acc.torch_cuda):
        return failed(NAME_TORCH, f"torch is built for CUDA {acc.torch_cuda} but driver {acc.driver_version} "
                                  f"supports CUDA {acc.driver_cuda} at most",
                      f"update the driver, or install torch built for CUDA <= {acc.driver_cuda}")
    if not acc.cuda_available:
        return failed(NAME_TORCH, f"torch {acc.torch_version} (CUDA {acc.torch_cuda}) cannot use the GPUs of "
                                  f"driver {acc.driver_version}",
                      "check CUDA_VISIBLE_DEVICES and the driver (nvidia-smi)")
    return passed(NAME_TORCH, f"{torch} (CUDA {acc.torch_cuda}), driver {acc.driver_version} "
                              f"(CUDA {acc.driver_cuda}), {acc.gpu_count} GPU(s)")


def _nvcc(env: dict[str, str]) -> str | None:
    home = env.get("CUDA_HOME") or env.get("CUDA_PATH")
    candidates = [Path(home) / "bin" / "nvcc"] if home else []
    found = shutil.which("nvcc", path=env.get("PATH"))
    candidates += [Path(found)] if found else []
    candidates.append(Path("/usr/local/cuda/bin/nvcc"))
    return next((str(c) for c in candidates if c.is_file()), None)


def judge_deepspeed_op(
    acc: Accelerator, ninja: str | None, nvcc: str | None, nvcc_version: str | None
) -> Check:
    if acc.torch_cuda is None or not acc.cuda_available:
        return Check(NAME_DEEPSPEED, Verdict.SKIP,
                     "does not apply: kernel injection needs CUDA (the CPU accelerator has no inference op)")
    if ninja is None:
        return failed(NAME_DEEPSPEED, "ninja not found: DeepSpeed cannot JIT-build its inference op "
                                      "(\"Unable to JIT load\")", "pip install ninja (into this venv)")
    if nvcc is None:
        return failed(NAME_DEEPSPEED, "nvcc not found (CUDA_HOME, PATH, /usr/local/cuda)",
                      f"install the CUDA {acc.torch_cuda} toolkit and set CUDA_HOME")
    if nvcc_version is None or _version(nvcc_version) != _version(acc.torch_cuda):
        return failed(NAME_DEEPSPEED, f"nvcc {nvcc} is CUDA {nvcc_version}, torch's is {acc.torch_cuda}",
                      f"point CUDA_HOME at a CUDA {acc.torch_cuda} toolkit")
    return passed(NAME_DEEPSPEED, f"ninja {ninja}, nvcc {nvcc} (CUDA {nvcc_version}) matches torch")


def check_torch(acc: Accelerator) -> Check:
    return judge_torch(acc)


def check_deepspeed_op(acc: Accelerator, env: dict[str, str] | None = None) -> Check:
    env = dict(os.environ if env is None else env)
    ninja = shutil.which("ninja", path=env.get("PATH"))
    nvcc = _nvcc(env)
    nvcc_version = None
    if nvcc is not None:
        out = subprocess.run([nvcc, "--version"], capture_output=True, text=True, timeout=30).stdout
        found = re.search(r"release ([\d.]+)", out)
        nvcc_version = found.group(1) if found else None
    return judge_deepspeed_op(acc, ninja, nvcc, nvcc_version)
