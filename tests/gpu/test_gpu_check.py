"""scripts/gpu_check.sh on this machine: the dry run passes, and without a GPU the real run fails loudly.

The dry run is the same script as on the GPU machine, with the CUDA-only steps
reported as such (nvidia-smi, the venv over the machine's torch, DeepSpeed's op
build, running the ``gpu`` tests, kernel injection rows); everything else runs
for real: the bundle's split and join, the checkpoints, the collection of the
``gpu`` tests, every in-process comparison of the table on CPU and the served
rows through a real tritonserver and perf_analyzer.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHECK = ROOT / "scripts" / "gpu_check.sh"
VARIANTS = (
    "HF fp32", "HF fp16", "DeepSpeed fp16, no injection", "DeepSpeed fp16, kernel injection",
    "Triton: DeepSpeed fp16",
)
no_gpu_here = pytest.mark.skipif(os.path.exists("/dev/nvidia0"), reason="this machine has a GPU")


def run_check(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    return subprocess.run(
        ["bash", str(CHECK), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
        check=False,
    )


@pytest.mark.server
@pytest.mark.slow
@pytest.mark.timeout(2100)  # the table alone may take 25 minutes on a loaded machine
def test_dry_run_passes_and_prints_the_whole_table(tmp_path: Path) -> None:
    result = run_check("--dry-run", "--run-dir", str(tmp_path), timeout=2000)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert "GPU CHECK PASSED (dry run: CUDA-only steps not run)" in result.stdout
    for step in ("nvidia-smi and torch.cuda", "transformer_inference op build", "running the gpu tests"):
        assert f"CUDA-ONLY  {step}" in result.stdout
    table = (tmp_path / "gpu_table.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert len(rows) == 10, table  # 4 in-process rows and 1 served row per model
    for variant in VARIANTS:
        assert sum(f"| {variant} |" in row for row in rows) == 2, (variant, table)
    assert "FAILED" not in table


@no_gpu_here
def test_without_a_gpu_the_real_check_fails_at_once(tmp_path: Path) -> None:
    result = run_check("--run-dir", str(tmp_path), timeout=120)
    assert result.returncode == 1
    assert "FAIL  nvidia-smi" in result.stdout
    assert "GPU CHECK FAILED: no usable GPU here" in result.stdout
    assert "== 2. bundle" not in result.stdout  # nothing runs after the machine step failed


@no_gpu_here
def test_required_gpu_tests_fail_instead_of_skipping() -> None:
    """Under the check (DS_TRITON_REQUIRE_GPU=1) a gpu test that would be skipped fails the run."""
    env = {**os.environ, "DS_TRITON_REQUIRE_GPU": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--collect-only", "-m", "gpu",
         "tests/gpu"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False,
    )
    assert result.returncode != 0
    assert "DS_TRITON_REQUIRE_GPU=1, and this machine has no /dev/nvidia0" in result.stdout + result.stderr
