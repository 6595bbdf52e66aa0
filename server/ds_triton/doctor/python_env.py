"""The Python the stubs run: the stub's libpython, the venv's base interpreter, and PATH.

tritonserver's Python stub embeds the libpython it was linked against and takes
``sys.prefix`` from the first ``python3`` on PATH. So the venv must be made from
the interpreter that owns that libpython (Debian's ``/usr/bin/python3.11`` for the
3.11 stub; a pyenv or conda build of 3.11 breaks imports inside models), and
its ``bin`` must come first on PATH when tritonserver starts.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from ds_triton.doctor.result import Check, Verdict, failed, passed
from ds_triton.server_process.tritonserver import installed_tritonserver, pytriton_home

NAME_STUB = "python stub"
NAME_PATH = "PATH"


def stub_path(version: str) -> Path:
    """The stub tritonserver will run for this Python version."""
    installed = installed_tritonserver()
    if installed is not None:
        return installed.parent.parent / "backends" / "python" / "triton_python_backend_stub"
    return pytriton_home() / "python_backend_stubs" / version / "triton_python_backend_stub"


def linked_libpython(ldd_output: str) -> tuple[str, str | None] | None:
    """``(library name, resolved path or None if not found)`` of libpython in ``ldd`` output."""
    for line in ldd_output.splitlines():
        found = re.match(r"\s*(libpython\S+)\s+=>\s+(not found|\S+)", line)
        if found:
            return found.group(1), None if found.group(2) == "not found" else found.group(2)
    return None


def judge_stub(stub: Path, ldd_output: str, base_prefix: str, base_executable: str) -> Check:
    """Whether the stub's libpython belongs to the interpreter this environment was made from."""
    linked = linked_libpython(ldd_output)
    if linked is None:
        return failed(NAME_STUB, f"{stub} links no libpython (ldd)", "reinstall nvidia-pytriton: make setup")
    name, path = linked
    if path is None:
        version = re.sub(r"^libpython(\d+\.\d+).*", r"\1", name)
        return failed(NAME_STUB, f"the stub needs {name}, which is not installed",
                      f"apt-get install libpython{version} (or the package of your distribution)")
    library = Path(path).resolve()
    prefix = Path(base_prefix).resolve()
    if prefix not in library.parents:
        version = re.sub(r"^libpython(\d+\.\d+).*", r"\1", name)
        owner = _interpreter_owning(library, version)
        return failed(
            NAME_STUB,
            f"the stub runs {library}, but this environment was made from {base_executable} "
            f"(prefix {prefix}): models would import packages from the wrong Python",
            f"recreate the venv from {owner or 'the interpreter that owns ' + str(library)} "
            f"(rm -rf .venv && BASE_PYTHON={owner or '...'} make setup)",
        )
    return passed(NAME_STUB, f"{stub.name} for Python {sys.version_info.major}.{sys.version_info.minor} "
                             f"runs {library}, which belongs to {base_executable}")


def _interpreter_owning(library: Path, version: str) -> Path | None:
    """``<prefix>/bin/pythonX.Y`` for the prefix a libpython lives under, if there is one."""
    for parent in library.parents:
        candidate = parent / "bin" / f"python{version}"
        if candidate.is_file():
            return candidate
    return None


def check_stub() -> Check:
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    try:
        stub = stub_path(version)
    except Exception as exc:  # nvidia-pytriton missing, or a bad $DS_TRITON_TRITONSERVER
        return failed(NAME_STUB, str(exc), "make setup")
    if not stub.is_file():
        return failed(NAME_STUB, f"no Python {version} stub at {stub}",
                      "make the venv from a Python that nvidia-pytriton ships a stub for (3.8-3.13)")
    if shutil.which("ldd") is None:
        return Check(NAME_STUB, Verdict.WARN, "ldd not found: cannot read which libpython the stub runs",
                     "apt-get install libc-bin")
    result = subprocess.run(["ldd", str(stub)], capture_output=True, text=True, timeout=30)
    base = getattr(sys, "_base_executable", sys.executable)
    return judge_stub(stub, result.stdout, sys.base_prefix, base)


def judge_path(path_value: str, env_bin: Path) -> Check:
    """Whether the first ``python3`` on ``path_value`` is this environment's."""
    found = shutil.which("python3", path=path_value)
    if found is not None and Path(found).parent.resolve() == env_bin.resolve():
        return passed(NAME_PATH, f"python3 first on PATH is {found} (this environment's)")
    first = found or "none"
    return failed(
        NAME_PATH,
        f"python3 first on PATH is {first}, not {env_bin / 'python3'}: a tritonserver started with this "
        "PATH runs models with that Python, which lacks ds_triton",
        f"export PATH={env_bin}:$PATH (or `source {env_bin / 'activate'}`); "
        "`make serve`/`ds-triton serve` do this for the server they start",
    )


def check_path() -> Check:
    return judge_path(os.environ.get("PATH", ""), Path(sys.executable).parent)
