"""``ds-triton doctor``: check this machine can serve the repository; one line per check.

Exit status 1 when any check fails. Run it in the shell (and container) that
will start the server: the PATH check reads the PATH it is given.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ds_triton.doctor.gpu import Accelerator, check_deepspeed_op, check_torch
from ds_triton.doctor.host import check_ports, check_shm
from ds_triton.doctor.models import check_models
from ds_triton.doctor.python_env import check_path, check_stub
from ds_triton.doctor.result import Check, Verdict
from ds_triton.doctor.tools import check_perf_analyzer
from ds_triton.repository.machine import Machine
from ds_triton.server_process.shm import SHM_DIR


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "doctor", help="check this machine can serve the repository (one line per check, with the fix)"
    )
    parser.add_argument("--model-repository", type=Path, default=Path("model_repository"))
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    parser.add_argument("--http-port", type=int, default=_env_int("HTTP_PORT", 8000))
    parser.add_argument("--grpc-port", type=int, default=_env_int("GRPC_PORT", 8001))
    parser.add_argument("--metrics-port", type=int, default=_env_int("METRICS_PORT", 8002))
    parser.add_argument(
        "--supervisor-metrics-port", type=int, default=_env_int("SUPERVISOR_METRICS_PORT", 8003)
    )
    parser.add_argument("--shm-dir", type=Path, default=SHM_DIR,
                        help="the shared-memory mount the stubs will use (default /dev/shm)")
    parser.set_defaults(func=run)


def run_checks(args: argparse.Namespace) -> list[Check]:
    machine = Machine.detect()
    accelerator = Accelerator.detect()
    ports = {"http": args.http_port, "grpc": args.grpc_port, "metrics": args.metrics_port,
             "supervisor-metrics": args.supervisor_metrics_port}
    return [
        check_stub(),
        check_path(),
        check_torch(accelerator),
        check_deepspeed_op(accelerator),
        check_shm(args.model_repository, len(machine.gpu_ids), args.shm_dir),
        check_perf_analyzer(),
        *check_ports(args.host, {role: port for role, port in ports.items() if port}),
        *check_models(args.model_repository, machine),
    ]


def run(args: argparse.Namespace) -> int:
    checks = run_checks(args)
    for check in checks:
        print(check.line(), flush=True)
    failures = sum(c.verdict is Verdict.FAIL for c in checks)
    print(f"{len(checks)} checks, {failures} failed" if failures else f"{len(checks)} checks, all passed")
    return 1 if failures else 0
