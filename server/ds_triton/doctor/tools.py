"""perf_analyzer runs: it needs apt's ``libb64-0d`` and the CUDA runtime ``libcudart.so.12``."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from ds_triton.doctor.result import Check, failed, passed
from ds_triton.server_process.tritonserver import server_env

NAME = "perf_analyzer"
FIXES = {
    "libb64": "apt-get install libb64-0d",
    "libcudart": "pip install nvidia-cuda-runtime-cu12 (ds-triton puts its lib folder on LD_LIBRARY_PATH)",
}


def judge_perf_analyzer(binary: str | None, returncode: int, output: str) -> Check:
    if binary is None:
        return failed(NAME, "not installed", "pip install 'tritonclient[all]' (make setup)")
    missing = re.search(r"error while loading shared libraries: (\S+?):", output)
    if missing:
        library = missing.group(1)
        fix = next((f for prefix, f in FIXES.items() if library.startswith(prefix)), f"install {library}")
        return failed(NAME, f"{binary} cannot start: {library} is missing", fix)
    if returncode != 0:
        return failed(NAME, f"{binary} --version exited {returncode}: {output.strip()[:200]}",
                      "reinstall tritonclient (make setup)")
    return passed(NAME, f"{binary} runs (with ds-triton's LD_LIBRARY_PATH)")


def check_perf_analyzer() -> Check:
    env = server_env()
    binary = shutil.which("perf_analyzer", path=env["PATH"]) or (
        str(Path(sys.executable).parent / "perf_analyzer")
        if (Path(sys.executable).parent / "perf_analyzer").is_file() else None
    )
    if binary is None:
        return judge_perf_analyzer(None, 0, "")
    result = subprocess.run([binary, "--version"], capture_output=True, text=True, env=env, timeout=60)
    return judge_perf_analyzer(binary, result.returncode, result.stdout + result.stderr)
