"""Every check, in the order it runs, with what it needs.

A check is a function of a ``Subject`` that reports problems (readers also
fill the subject in). It runs once, as soon as what it ``needs`` is known; a
check whose input failed earlier never runs, so each problem is reported once,
at its cause. To add a family: write its module, add its rows here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ds_triton.repository.checks import (
    checkpoint,
    decoupled,
    files,
    interface,
    machine,
    naming,
    queue,
    stale,
)
from ds_triton.repository.checks.subject import Need, Subject


@dataclass(frozen=True)
class Check:
    """One check of the registry."""

    name: str
    run: Callable[[Subject], None]
    needs: frozenset[Need]


def _check(name: str, run: Callable[[Subject], None], *needs: Need) -> Check:
    return Check(name, run, frozenset(needs))


CHECKS: tuple[Check, ...] = (
    # The folder's files, read into the subject.
    _check("shim", files.check_shim, "files"),
    _check("config file", files.read_config_file, "files"),
    _check("spec file", files.read_spec_file, "files"),
    # The spec alone.
    _check("spec name", naming.check_spec_name, "spec"),
    _check("spec batching", decoupled.check_spec_batching, "spec"),
    _check("checkpoint", checkpoint.check_checkpoint, "spec"),
    # The config (with the spec where the task decides).
    _check("config name", naming.check_config_name, "config"),
    _check("backend", naming.check_backend, "config"),
    _check("interface", interface.check_interface, "config", "spec"),
    _check("decoupling", decoupled.check_decoupling, "config", "spec"),
    _check("queue policy", queue.check_queue_policy, "config", "spec"),
    _check("gpus", machine.check_gpus, "config"),
    _check("tensor parallel", machine.check_tensor_parallel, "spec"),
    _check("cores", machine.check_cores, "config"),
    # Last: fields already reported above are not reported again as stale.
    _check("stale render", stale.check_render, "files", "config", "spec"),
)


def run_checks(subject: Subject) -> None:
    """Run every check not yet run whose needs the subject now has."""
    for check in CHECKS:
        if check.name not in subject.done and all(subject.has(n) for n in check.needs):
            subject.done.add(check.name)
            check.run(subject)
