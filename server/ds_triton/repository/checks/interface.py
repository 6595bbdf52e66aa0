"""The tensor interface a config declares, against the one its task needs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from ds_triton.repository.checks.subject import Subject
from ds_triton.repository.render import interface_of
from ds_triton_interface import EMBED_EMBEDDING, TensorSpec, task_interface


def embedding_dimension(model: Subject) -> int | None:
    """The checkpoint's hidden size, else (checkpoint unreadable) what the config declares."""
    if model.checkpoint is not None:
        return model.checkpoint.hidden_size
    assert model.config is not None
    for tensor in model.config.output:
        if tensor.name == EMBED_EMBEDDING and len(tensor.dims) == 1 and tensor.dims[0] > 0:
            return int(tensor.dims[0])
    return None


def check_interface(model: Subject) -> None:
    assert model.config is not None and model.spec is not None
    task = model.spec.task
    dimension = embedding_dimension(model) if task == "embedding" else None
    if task == "embedding" and dimension is None:
        return  # unknowable here; the checkpoint problem is already reported
    expected = task_interface(task, dimension)
    actual = interface_of(model.config)
    _compare(model, f"task {task!r}", "input", expected.inputs, actual.inputs)
    _compare(model, f"task {task!r}", "output", expected.outputs, actual.outputs)


def _compare(
    model: Subject,
    task: str,
    role: Literal["input", "output"],
    expected: Sequence[TensorSpec],
    actual: Sequence[TensorSpec],
) -> None:
    wanted = {t.name: t for t in expected}
    have = {t.name: t for t in actual}
    for name, want in wanted.items():
        got = have.get(name)
        if got is None:
            if not want.optional:
                model.report(
                    "interface", f"{role} {name!r} is missing; {task} needs {_describe(want)}",
                    field=role,
                )
        elif (got.data_type, got.dims, got.optional) != (want.data_type, want.dims, want.optional):
            model.report(
                "interface", f"{role} {name!r} is {_describe(got)}; {task} needs {_describe(want)}",
                field=role,
            )
    for name in sorted(set(have) - set(wanted)):
        model.report(
            "interface",
            f"{role} {name!r} is not part of {task}'s interface "
            f"({', '.join(sorted(wanted))}); the model would never read or write it",
            field=role,
        )


def _describe(tensor: TensorSpec) -> str:
    dims = ", ".join(map(str, tensor.dims))
    return f"{tensor.data_type} [{dims}]{' (optional)' if tensor.optional else ''}"

