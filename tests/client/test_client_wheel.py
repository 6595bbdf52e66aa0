"""The client as its own distribution: built, installed into a fresh venv of the system
Python (no torch), and used from its CLI against a real server.

Its dependencies come from PyPI once and are kept in ``.venv/client-wheelhouse`` (next to
the project's venv, ignored by git), so later runs install offline.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from ds_triton.server_process.tritonserver import TritonServer
from ds_triton_client._version import __version__
from tests.conftest import ROOT

pytestmark = [pytest.mark.server, pytest.mark.slow]

SYSTEM_PYTHON = "/usr/bin/python3.11"
WHEELHOUSE = ROOT / ".venv" / "client-wheelhouse"
NOT_INSTALLED = ("torch", "deepspeed", "transformers", "pytriton", "ds_triton", "ds_triton_perf")


def run(*command: str | Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{command}: {result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The client wheel, built from a copy of client/ (the build leaves files behind)."""
    root = tmp_path_factory.mktemp("client-wheel")
    source = root / "client"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    shutil.copytree(ROOT / "client", source, ignore=ignore)
    run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", root, source)
    (built,) = root.glob("ds_triton_client-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv of the system Python with the wheel and its dependencies installed.

    The project's pip installs into it (``--python``), which spares the venv its own pip,
    and skips byte-compiling: the test only needs the packages there.
    """
    venv = tmp_path_factory.mktemp("client-venv") / "venv"
    run(SYSTEM_PYTHON, "-m", "venv", "--without-pip", venv)
    pip = (sys.executable, "-m", "pip", "--python", venv / "bin" / "python")
    offline = [*pip, "install", "-q", "--no-compile", "--no-index", "--find-links", WHEELHOUSE, wheel]
    if subprocess.run([str(c) for c in offline], capture_output=True).returncode != 0:
        run(*pip, "download", "-q", "-d", WHEELHOUSE, "-c", ROOT / "constraints.txt", wheel, timeout=600)
        run(*offline)
    return venv


def test_the_wheel_holds_only_the_client_and_its_interface(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {
        "ds_triton_client",
        "ds_triton_interface",
        f"ds_triton_client-{__version__}.dist-info",
    }
    assert {"ds_triton_client/py.typed", "ds_triton_interface/py.typed"} <= set(names)
    metadata = zipfile.ZipFile(wheel).read(f"ds_triton_client-{__version__}.dist-info/METADATA").decode()
    assert "Requires-Dist: tritonclient[grpc,http]" in metadata
    assert "Requires-Dist: pyarrow" in metadata and 'extra == "parquet"' in metadata


def test_the_installed_cli_embeds_generates_and_streams(venv: Path, triton_server: TritonServer) -> None:
    cli = venv / "bin" / "ds-triton-client"
    http, grpc = f"http://{triton_server.http_url}", f"grpc://{triton_server.grpc_url}"
    assert "embed" in run(cli, "--help").stdout
    embedded = json.loads(run(cli, "--url", http, "--json", "embed", "hello", "world").stdout)
    assert embedded["shape"] == [2, 384]
    generated = json.loads(
        run(cli, "--url", grpc, "--json", "generate", "Hello", "--max-tokens", "4", "--ignore-eos").stdout
    )
    assert generated["num_output_tokens"] == 4 and generated["text"]
    streamed = run(cli, "--url", http, "generate", "Hello", "--max-tokens", "4", "--ignore-eos")
    assert streamed.stdout.strip() and "piece(s) streamed" in streamed.stderr
    version = run(venv / "bin" / "python", "-c", "import ds_triton_client as c; print(c.__version__)")
    assert version.stdout.strip() == __version__


def test_the_venv_has_no_server_side_packages(venv: Path) -> None:
    probe = "import importlib.util, sys; print([m for m in sys.argv[1:] if importlib.util.find_spec(m)])"
    found = run(venv / "bin" / "python", "-c", probe, *NOT_INSTALLED).stdout.strip()
    assert found == "[]"
