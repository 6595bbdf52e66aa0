"""The host's side of serving: enough ``/dev/shm`` for every stub, and free ports.

Each Python-backend instance gets a ``/dev/shm`` region of ``shm-default-byte-size``
(1 MiB unless ``--backend-config=python,shm-default-byte-size=`` says otherwise)
that grows by ``shm-growth-byte-size`` steps to hold the tensors of the requests
it runs. Docker gives a container 64 MiB unless told otherwise (``--shm-size``).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from google.protobuf.json_format import MessageToDict

from ds_triton.devices import instance_count
from ds_triton.doctor.result import Check, failed, passed
from ds_triton.repository.layout import model_folders
from ds_triton.repository.schema import ConfigSchemaError, read_config
from ds_triton.server_process.shm import SHM_DIR

NAME_SHM = "shared memory"
MIB = 1024 * 1024
SHM_DEFAULT_BYTES = 1 * MIB  # python_backend's shm-default-byte-size
STRING_ELEMENT_BYTES = 16 * 1024  # a text element: room for a long prompt or document
DTYPE_BYTES = {"TYPE_BOOL": 1, "TYPE_UINT8": 1, "TYPE_INT8": 1, "TYPE_UINT16": 2, "TYPE_INT16": 2,
               "TYPE_FP16": 2, "TYPE_BF16": 2, "TYPE_UINT32": 4, "TYPE_INT32": 4, "TYPE_FP32": 4,
               "TYPE_UINT64": 8, "TYPE_INT64": 8, "TYPE_FP64": 8, "TYPE_STRING": STRING_ELEMENT_BYTES}
VARIABLE_DIM = 512  # what a -1 dimension of numbers is taken to be (of text: one element)


@dataclass(frozen=True)
class ShmNeed:
    model: str
    instances: int
    per_instance: int  # bytes


def shm_need(repository: Path, gpu_count: int) -> list[ShmNeed]:
    """What each model's instances need in ``/dev/shm``: the region plus a full batch in and out."""
    needs = []
    for folder in model_folders(repository):
        try:
            config = MessageToDict(read_config(folder.config_path), preserving_proto_field_name=True)
        except (OSError, ConfigSchemaError):
            continue  # the models check reports it
        groups = config.get("instance_group", [])
        for group in groups:  # KIND_GPU without a list: one set per GPU Triton sees
            if group.get("kind") == "KIND_GPU" and not group.get("gpus"):
                group["gpus"] = list(range(max(gpu_count, 1)))
        batch = max(1, int(config.get("max_batch_size", 0)))
        tensors = [*config.get("input", []), *config.get("output", [])]
        payload = sum(_tensor_bytes(t) for t in tensors) * batch
        needs.append(ShmNeed(folder.name, instance_count(config), SHM_DEFAULT_BYTES + payload))
    return needs


def _tensor_bytes(tensor: dict[str, object]) -> int:
    dtype = str(tensor.get("data_type"))
    variable = 1 if dtype == "TYPE_STRING" else VARIABLE_DIM
    elements = 1
    for dim in tensor.get("dims", []):  # type: ignore[attr-defined]
        elements *= variable if int(dim) < 0 else int(dim)
    return elements * DTYPE_BYTES.get(dtype, 8)


def judge_shm(shm_dir: Path, needs: Iterable[ShmNeed], size: int, free: int) -> Check:
    needs = list(needs)
    need = sum(n.instances * n.per_instance for n in needs)
    what = ", ".join(f"{n.model} {n.instances} x {n.per_instance / MIB:.1f}" for n in needs) or "no models"
    detail = f"{shm_dir}: {free / MIB:.0f} MiB free of {size / MIB:.0f} MiB; the stubs need about " \
             f"{need / MIB:.1f} MiB ({what} MiB)"
    if free < need:
        fix = ("give the server more shared memory: docker run --shm-size=1g, compose shm_size, "
               "or a Kubernetes emptyDir {medium: Memory} mounted at /dev/shm")
        return failed(NAME_SHM, detail, fix)
    return passed(NAME_SHM, detail)


def check_shm(repository: Path, gpu_count: int, shm_dir: Path = SHM_DIR,
              statvfs: Callable[[Path], os.statvfs_result] = os.statvfs) -> Check:
    try:
        stats = statvfs(shm_dir)
    except OSError as exc:
        return failed(NAME_SHM, f"{shm_dir}: {exc.strerror}", "mount a tmpfs at /dev/shm")
    size, free = stats.f_blocks * stats.f_frsize, stats.f_bavail * stats.f_frsize
    return judge_shm(shm_dir, shm_need(repository, gpu_count), size, free)


def check_ports(host: str, ports: dict[str, int]) -> list[Check]:
    """One line per port: free to bind on ``host``, or who holds it."""
    checks = []
    for role, port in ports.items():
        name = f"port {port} ({role})"
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError as exc:
                holder = _listener(port)
                checks.append(failed(name, f"cannot listen on {host}:{port}: {exc.strerror}"
                                           + (f" (held by {holder})" if holder else ""),
                                     f"stop it, or pick another port (--{role}-port / "
                                     f"make serve {role.upper().replace('-', '_')}_PORT=...)"))
                continue
        checks.append(passed(name, f"free on {host}"))
    return checks


def _listener(port: int) -> str | None:
    """``pid (name)`` of the process listening on ``port``, when /proc shows it."""
    inodes = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    if not inodes:
        return None
    targets = {f"socket:[{inode}]" for inode in inodes}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            for fd in (entry / "fd").iterdir():
                if os.readlink(fd) in targets:
                    return f"pid {entry.name} ({(entry / 'comm').read_text().strip()})"
        except OSError:
            continue
    return None
