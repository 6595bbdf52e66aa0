"""`ds-triton doctor`: each failing case on CPU names the problem and its fix."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from ds_triton.doctor.gpu import Accelerator, judge_deepspeed_op, judge_torch
from ds_triton.doctor.host import MIB, check_ports, check_shm
from ds_triton.doctor.python_env import judge_path, judge_stub
from ds_triton.doctor.result import Verdict
from ds_triton.doctor.tools import judge_perf_analyzer
from ds_triton.server_process.tritonserver import free_ports

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
LDD = """\tlinux-vdso.so.1 (0x00007ffd)
\tlibpython3.11.so.1.0 => /lib/x86_64-linux-gnu/libpython3.11.so.1.0 (0x00007f8d49800000)
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f8d49600000)
"""
STUB = Path("/x/triton_python_backend_stub")


def line_of(output: str, name: str) -> str:
    return next(line for line in output.splitlines() if line[6:].startswith(f"{name}:"))


@pytest.mark.slow
def test_cli_fails_on_a_broken_path_and_a_missing_checkpoint(tmp_path: Path) -> None:
    repository = tmp_path / "model_repository"
    shutil.copytree(ROOT / "model_repository" / "text_generation", repository / "text_generation",
                    ignore=shutil.ignore_patterns("__pycache__", "checkpoint"))
    spec_path = repository / "text_generation" / "1" / "model.json"
    spec = json.loads(spec_path.read_text())
    spec["checkpoint"] = str(tmp_path / "no-such-checkpoint")
    spec_path.write_text(json.dumps(spec))
    http, grpc, metrics, supervisor = free_ports(4)
    result = subprocess.run(
        [str(VENV_BIN / "ds-triton"), "doctor", "--model-repository", str(repository),
         "--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics),
         "--supervisor-metrics-port", str(supervisor)],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "PATH": "/usr/bin:/bin"},  # the venv is not on it
    )  # fmt: skip
    print(result.stdout)
    assert result.returncode == 1
    path = line_of(result.stdout, "PATH")
    assert path.startswith("FAIL") and "python3 first on PATH is /usr/bin/python3" in path
    assert f"fix: export PATH={VENV_BIN}:$PATH" in path
    model = line_of(result.stdout, "model text_generation")
    assert model.startswith("FAIL") and "[checkpoint]" in model and "no-such-checkpoint" in model
    assert "fix:" in model
    assert line_of(result.stdout, "python stub").startswith("PASS")
    assert line_of(result.stdout, "DeepSpeed inference op").startswith("SKIP")
    assert line_of(result.stdout, f"port {http} (http)").startswith("PASS")
    assert result.stdout.rstrip().endswith("failed")


def test_the_venv_first_on_path_passes() -> None:
    assert judge_path(f"{VENV_BIN}:/usr/bin:/bin", VENV_BIN).verdict is Verdict.PASS


def test_a_tiny_dev_shm_fails_with_the_fix(tmp_path: Path) -> None:
    def tiny(_: Path) -> os.statvfs_result:
        blocks = MIB // 4096  # a 1 MiB tmpfs
        return os.statvfs_result((4096, 4096, blocks, blocks, blocks, 100, 100, 100, 0, 255))

    check = check_shm(ROOT / "model_repository", 0, tmp_path, statvfs=tiny)
    assert check.verdict is Verdict.FAIL
    assert "1 MiB free of 1 MiB" in check.detail and "text_embedding 2 x" in check.detail
    assert "--shm-size" in check.fix
    roomy = check_shm(ROOT / "model_repository", 0, tmp_path)  # tmp_path's own file system
    assert roomy.verdict is Verdict.PASS


def test_a_venv_from_another_python_than_the_stubs_fails() -> None:
    good = judge_stub(STUB, LDD, "/usr", "/usr/bin/python3.11")
    assert good.verdict is Verdict.PASS
    pyenv_prefix = "/root/.pyenv/versions/3.11.9"
    pyenv = judge_stub(STUB, LDD, pyenv_prefix, f"{pyenv_prefix}/bin/python3.11")
    assert pyenv.verdict is Verdict.FAIL and "wrong Python" in pyenv.detail
    assert "/usr/bin/python3.11" in pyenv.fix
    missing = judge_stub(STUB, LDD.replace("=> /lib/x86_64-linux-gnu/libpython3.11.so.1.0", "=> not found"),
                         "/usr", "/usr/bin/python3.11")
    assert missing.verdict is Verdict.FAIL and missing.fix.startswith("apt-get install libpython3.11")


def test_perf_analyzer_missing_libraries_name_their_package() -> None:
    error = "perf_analyzer: error while loading shared libraries: libb64.so.0d: cannot open shared object"
    assert judge_perf_analyzer("perf_analyzer", 127, error).fix == "apt-get install libb64-0d"
    error = error.replace("libb64.so.0d", "libcudart.so.12")
    assert "nvidia-cuda-runtime-cu12" in judge_perf_analyzer("perf_analyzer", 127, error).fix
    assert judge_perf_analyzer("perf_analyzer", 0, "Perf Analyzer Version").verdict is Verdict.PASS


def test_torch_cuda_and_driver_disagreements() -> None:
    cpu = Accelerator("2.13.0+cpu", None, False, 0, None, None)
    assert judge_torch(cpu).verdict is Verdict.PASS
    assert judge_deepspeed_op(cpu, None, None, None).verdict is Verdict.SKIP
    cpu_torch_on_gpu_box = Accelerator("2.13.0+cpu", None, False, 0, "550.54", "12.4")
    assert judge_torch(cpu_torch_on_gpu_box).verdict is Verdict.FAIL
    old_driver = Accelerator("2.5.0", "12.6", False, 0, "535.1", "12.2")
    assert "supports CUDA 12.2 at most" in judge_torch(old_driver).detail
    good = Accelerator("2.5.0", "12.4", True, 2, "550.54", "12.4")
    assert judge_torch(good).verdict is Verdict.PASS
    nvcc = "/usr/local/cuda/bin/nvcc"
    assert judge_deepspeed_op(good, None, nvcc, "12.4").fix.startswith("pip install ninja")
    assert judge_deepspeed_op(good, "/bin/ninja", nvcc, "11.8").verdict is Verdict.FAIL
    assert judge_deepspeed_op(good, "/bin/ninja", nvcc, "12.4").verdict is Verdict.PASS


def test_a_port_in_use_names_its_holder() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        (check,) = check_ports("127.0.0.1", {"http": port})
    assert check.verdict is Verdict.FAIL
    assert f"held by pid {os.getpid()}" in check.detail
    assert "HTTP_PORT" in check.fix
