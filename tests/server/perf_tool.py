"""Run the real perf_analyzer briefly against a test server and read its throughput."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

from ds_triton.server_process.tritonserver import server_env

# Short windows, and stability that never blocks a result: these runs prove the
# tool works against the server, they are not measurements.
BRIEF = ["--measurement-interval", "2000", "--stability-percentage", "999", "--max-trials", "3"]


def perf_analyzer_throughput(
    model: str, url: str, input_data: dict[str, Any], work_dir: Path, *args: str, timeout: float = 240
) -> float:
    """Infer/s that perf_analyzer reports for ``model`` fed ``input_data`` (its JSON format)."""
    data_file = work_dir / "perf_analyzer_input.json"
    data_file.write_text(json.dumps(input_data))
    command = ["perf_analyzer", "-m", model, "-u", url, "--input-data", str(data_file), *BRIEF, *args]
    result = subprocess.run(
        command, env=server_env(), capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    match = re.search(r"Throughput: ([\d.]+) infer/sec", result.stdout)
    assert match, result.stdout
    return float(match.group(1))
