"""``ds-triton check [REPO]``: lint a model repository; exit 1 with one line per problem."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ds_triton.repository.checks import check_repository
from ds_triton.repository.machine import Machine


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "check",
        help="lint a model repository (schema, checkpoints, interfaces, GPUs, cores, stale renders)",
        description="Check every model folder the way Triton would load it, against this machine "
        "(or the one described by --cores/--gpu-count). Exit status 1 when any problem is found.",
    )
    parser.add_argument("repository", nargs="?", type=Path, default=Path("model_repository"))
    parser.add_argument("--cores", type=int, help="check against this many CPU cores (default: this machine)")
    parser.add_argument(
        "--gpu-count", type=int, help="check against GPUs 0..N-1 (default: this machine's GPUs)"
    )
    parser.set_defaults(func=run)


def target_machine(cores: int | None, gpu_count: int | None) -> Machine:
    """This machine, with the cores or GPU count overridden where given."""
    here = Machine.detect()
    return Machine(
        cores=here.cores if cores is None else cores,
        gpu_ids=here.gpu_ids if gpu_count is None else tuple(range(gpu_count)),
    )


def run(args: argparse.Namespace) -> int:
    repository: Path = args.repository
    if not repository.is_dir():
        print(f"error: {repository} is not a folder", file=sys.stderr)
        return 2
    machine = target_machine(args.cores, args.gpu_count)
    problems = check_repository(repository, machine)
    models = {p.model for p in problems}
    for problem in problems:
        print(problem)
    if problems:
        print(
            f"{len(problems)} problem(s) in {len(models)} model(s) of {repository} "
            f"(machine: {machine.describe()})",
            file=sys.stderr,
        )
        return 1
    count = sum(1 for p in repository.iterdir() if p.is_dir())
    print(f"{repository}: {count} model(s), no problems (machine: {machine.describe()})")
    return 0
