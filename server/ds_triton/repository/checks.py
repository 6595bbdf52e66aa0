"""Lint a model repository before Triton sees it: one precise ``Problem`` per mistake.

Each model folder is checked for, in order: its layout, ``config.pbtxt`` against
Triton's protobuf schema, ``1/model.json`` against the spec, names that differ
from the folder, the checkpoint (present, readable, an architecture the task can
use), the tensor interface of the task, options that do not apply to a
decoupled model, GPU ids and CPU threads against this machine, and finally
whether ``config.pbtxt`` is what ``model.json`` renders to (a stale render or a
hand edit). Checks that need a file that failed earlier are skipped, so every
problem is reported once, at its cause.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from google.protobuf import text_format
from google.protobuf.descriptor import FieldDescriptor
from tritonclient.grpc import model_config_pb2 as mc

from ds_triton.errors import SpecError
from ds_triton.repository.checkpoint import CheckpointInfo, inspect_checkpoint
from ds_triton.repository.layout import CONFIG_FILENAME, SHIM_SOURCE, ModelFolder, model_folders
from ds_triton.repository.machine import Machine
from ds_triton.repository.render import BACKEND, interface_of, render_config
from ds_triton.repository.schema import ConfigSchemaError, read_config
from ds_triton.spec import SPEC_FILENAME, BatchingSpec, ModelSpec
from ds_triton_interface import EMBED_EMBEDDING, TensorSpec, task_interface

ProblemKind = Literal[
    "layout", "schema", "spec", "name", "checkpoint", "interface", "decoupled", "gpu", "cores",
    "stale",
]

# Problems that depend on the machine the check runs on, not on the files: a
# repository prepared on a laptop for a GPU server has them there and not there.
MACHINE_KINDS: frozenset[str] = frozenset({"gpu", "cores"})

SPEC_FILE = f"1/{SPEC_FILENAME}"


@dataclass(frozen=True)
class Problem:
    """One mistake in one model folder.

    Attributes:
        model: the model folder's name.
        kind: the class of mistake (``schema``, ``checkpoint``, ``gpu``, ...).
        message: what is wrong and what would fix it.
        where: the file (and for schema errors ``line:column``) it is in.
        field: the top-level ``ModelConfig`` field concerned, if any.
    """

    model: str
    kind: ProblemKind
    message: str
    where: str = CONFIG_FILENAME
    field: str = ""

    @property
    def machine_specific(self) -> bool:
        return self.kind in MACHINE_KINDS

    def __str__(self) -> str:
        return f"{self.model}/{self.where}: [{self.kind}] {self.message}"


@dataclass
class _Model:
    """What the checks of one folder learn as they go."""

    name: str
    config: mc.ModelConfig | None = None
    spec: ModelSpec | None = None
    checkpoint: CheckpointInfo | None = None
    problems: list[Problem] = field(default_factory=list)

    def report(
        self, kind: ProblemKind, message: str, where: str = CONFIG_FILENAME, field: str = ""
    ) -> None:
        self.problems.append(Problem(self.name, kind, message, where, field))


def check_repository(repository: Path, machine: Machine) -> list[Problem]:
    """Every problem of every model folder in ``repository``."""
    repository = Path(repository)
    if not repository.is_dir():
        return [Problem(repository.name, "layout", f"{repository} is not a folder", where="")]
    return [p for folder in model_folders(repository) for p in check_model(folder, machine)]


def check_model(folder: ModelFolder, machine: Machine) -> list[Problem]:
    """Every problem of one model folder (empty when Triton will load it as specified)."""
    model = _Model(folder.name)
    _check_layout(model, folder)
    _read_config(model, folder)
    _read_spec(model, folder)
    if model.spec is not None:
        model.checkpoint = check_spec(model.spec, folder.name, folder.version_dir, model.problems)
    if model.config is not None:
        check_config(model.config, folder.name, machine, model.spec, model.checkpoint, model.problems)
        if model.spec is not None:
            _check_render(model, model.config, model.spec)
    return model.problems


def check_spec(
    spec: ModelSpec, folder_name: str, version_dir: Path, problems: list[Problem]
) -> CheckpointInfo | None:
    """Checks of a valid spec that need no config: its name, options, checkpoint.

    Appends to ``problems``; returns the checkpoint's info when it is usable.
    """
    model = _Model(folder_name, problems=problems)
    if spec.name != folder_name:
        model.report(
            "name",
            f"name {spec.name!r} differs from its folder {folder_name!r}; they must match",
            where=SPEC_FILE,
        )
    if spec.task == "generation" and spec.batching != BatchingSpec():
        model.report(
            "decoupled",
            "'batching' does not apply to a generation model: it is decoupled and batches in "
            "flight itself (see generation.max_concurrent_sequences); remove the section",
            where=SPEC_FILE,
        )
    try:
        return inspect_checkpoint(spec, version_dir)
    except SpecError as exc:  # CheckpointError, or a package: checkpoint not installed
        model.report("checkpoint", str(exc), where=SPEC_FILE)
        return None


def check_config(
    config: mc.ModelConfig,
    folder_name: str,
    machine: Machine,
    spec: ModelSpec | None,
    checkpoint: CheckpointInfo | None = None,
    problems: list[Problem] | None = None,
) -> list[Problem]:
    """Checks of a parsed config (name, backend, interface, decoupling, GPUs, cores).

    Appends to and returns ``problems`` (a new list if none is given).
    """
    model = _Model(folder_name, config, spec, checkpoint)
    if problems is not None:
        model.problems = problems  # share the caller's list, so later checks see these
    if config.name and config.name != folder_name:
        model.report(
            "name",
            f"name {config.name!r} differs from its folder {folder_name!r}; Triton serves a "
            "model under its folder's name, so they must match",
            field="name",
        )
    if config.backend != BACKEND:
        model.report(
            "layout",
            f"backend is {config.backend or '(unset)'!r}; models of this repository run on "
            f"{BACKEND!r} (the shared ds_triton model)",
            field="backend",
        )
    if spec is not None:
        _check_interface(model, config, spec)
        _check_decoupling(model, config, spec)
    _check_gpus(model, config, machine)
    _check_cores(model, config, spec, machine)
    return model.problems


# -- files -------------------------------------------------------------------


def _check_layout(model: _Model, folder: ModelFolder) -> None:
    shim = folder.shim_path
    if not shim.is_file():
        model.report(
            "layout", "missing; it must be the shared three-line shim (`ds-triton render` writes it)",
            where="1/model.py",
        )
    elif shim.read_text() != SHIM_SOURCE:
        model.report(
            "layout",
            "is not the shared shim; every model runs the shared ds_triton TritonPythonModel "
            "(model-specific options belong in model.json)",
            where="1/model.py",
        )


def _read_config(model: _Model, folder: ModelFolder) -> None:
    path = folder.config_path
    if not path.is_file():
        model.report("layout", "missing; run `ds-triton render` to write it from model.json")
        return
    try:
        model.config = read_config(path)
    except ConfigSchemaError as exc:
        where = f"{CONFIG_FILENAME}:{exc.line}:{exc.column}"
        model.report("schema", f"not a valid Triton ModelConfig: {exc}", where=where)


def _read_spec(model: _Model, folder: ModelFolder) -> None:
    if not folder.spec_path.is_file():
        model.report("layout", "missing; every model folder is rendered from its spec", where=SPEC_FILE)
        return
    try:
        model.spec = ModelSpec.load(folder.spec_path)
    except SpecError as exc:
        model.report("spec", str(exc), where=SPEC_FILE)


# -- config ------------------------------------------------------------------


def _embedding_dimension(config: mc.ModelConfig, checkpoint: CheckpointInfo | None) -> int | None:
    """The checkpoint's hidden size, else (checkpoint unreadable) what the config declares."""
    if checkpoint is not None:
        return checkpoint.hidden_size
    for tensor in config.output:
        if tensor.name == EMBED_EMBEDDING and len(tensor.dims) == 1 and tensor.dims[0] > 0:
            return int(tensor.dims[0])
    return None


def _check_interface(model: _Model, config: mc.ModelConfig, spec: ModelSpec) -> None:
    dimension = _embedding_dimension(config, model.checkpoint) if spec.task == "embedding" else None
    if spec.task == "embedding" and dimension is None:
        return  # unknowable here; the checkpoint problem is already reported
    expected = task_interface(spec.task, dimension)
    actual = interface_of(config)
    _compare_tensors(model, spec, "input", expected.inputs, actual.inputs)
    _compare_tensors(model, spec, "output", expected.outputs, actual.outputs)


def _compare_tensors(
    model: _Model,
    spec: ModelSpec,
    role: Literal["input", "output"],
    expected: Sequence[TensorSpec],
    actual: Sequence[TensorSpec],
) -> None:
    wanted = {t.name: t for t in expected}
    have = {t.name: t for t in actual}
    task = f"task {spec.task!r}"
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
                "interface",
                f"{role} {name!r} is {_describe(got)}; {task} needs {_describe(want)}",
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


def _check_decoupling(model: _Model, config: mc.ModelConfig, spec: ModelSpec) -> None:
    expected = task_interface(spec.task, 1)
    decoupled = config.model_transaction_policy.decoupled
    if expected.decoupled and not decoupled:
        model.report(
            "decoupled",
            f"task {spec.task!r} streams any number of responses per request: it needs "
            "model_transaction_policy { decoupled: true }",
            field="model_transaction_policy",
        )
    if not expected.decoupled and decoupled:
        model.report(
            "decoupled",
            f"task {spec.task!r} answers each request once: remove "
            "model_transaction_policy { decoupled: true }",
            field="model_transaction_policy",
        )
    if not (decoupled or expected.decoupled):
        if config.max_batch_size < 1:
            model.report(
                "decoupled",
                f"task {spec.task!r} is batched by Triton: max_batch_size must be >= 1",
                field="max_batch_size",
            )
        return
    # A decoupled generation model batches in flight inside the model; Triton-side
    # batching would only add queueing delay (and collapses to size 1 with streaming).
    if config.HasField("dynamic_batching"):
        model.report(
            "decoupled",
            "dynamic_batching does not apply to a decoupled model: it batches in flight itself "
            "(generation.max_concurrent_sequences); remove dynamic_batching",
            field="dynamic_batching",
        )
    if config.HasField("sequence_batching"):
        model.report(
            "decoupled",
            "sequence_batching does not apply to a decoupled model; remove it",
            field="sequence_batching",
        )
    if config.max_batch_size != 0:
        model.report(
            "decoupled",
            f"max_batch_size is {config.max_batch_size}; a decoupled model takes one request "
            "at a time from Triton and needs max_batch_size: 0",
            field="max_batch_size",
        )
    if config.response_cache.enable:
        model.report(
            "decoupled",
            "response_cache cannot cache the streamed responses of a decoupled model; disable it",
            field="response_cache",
        )


def _check_gpus(model: _Model, config: mc.ModelConfig, machine: Machine) -> None:
    have = machine.gpu_ids
    for index, group in enumerate(config.instance_group):
        if group.kind != mc.ModelInstanceGroup.KIND_GPU:
            continue
        if not have:
            model.report(
                "gpu",
                f"instance_group[{index}] is KIND_GPU but this machine has no GPU",
                field="instance_group",
            )
            continue
        missing = [g for g in group.gpus if g not in have]
        if missing:
            model.report(
                "gpu",
                f"instance_group[{index}] names GPU {', '.join(map(str, missing))}, which "
                f"does not exist here (GPUs: {', '.join(map(str, have))})",
                field="instance_group",
            )


def _check_cores(
    model: _Model, config: mc.ModelConfig, spec: ModelSpec | None, machine: Machine
) -> None:
    cpu_groups = [g for g in config.instance_group if g.kind == mc.ModelInstanceGroup.KIND_CPU]
    instances = sum(max(1, g.count) for g in cpu_groups)
    if not instances:
        return
    cores = machine.cores
    pinned = spec.deployment.threads_per_instance if spec is not None else None
    # The instance's own rule (ds_triton.devices): cores // instances, at least 1.
    threads = pinned or max(1, cores // instances)
    if instances * threads > cores:
        source = "deployment.threads_per_instance" if pinned else "at least 1 thread each"
        model.report(
            "cores",
            f"{instances} CPU instance(s) x {threads} thread(s) ({source}) = "
            f"{instances * threads} threads > {cores} cores on this machine; lower "
            "deployment.instances_per_device or threads_per_instance",
            field="instance_group",
        )


# -- stale render ------------------------------------------------------------


def _check_render(model: _Model, config: mc.ModelConfig, spec: ModelSpec) -> None:
    """Compare the config with what model.json renders to, field by field."""
    dimension = _embedding_dimension(config, model.checkpoint) if spec.task == "embedding" else None
    if spec.task == "embedding" and dimension is None:
        return
    # For gpus "all" the config is right for whichever GPUs it was rendered for
    # (whether they exist here is the gpu check's business).
    gpu_ids = [g for group in config.instance_group for g in group.gpus]
    expected = render_config(spec, embedding_dimension=dimension, gpu_ids=gpu_ids)
    reported = {p.field for p in model.problems if p.field}
    for descriptor in mc.ModelConfig.DESCRIPTOR.fields:
        name = descriptor.name
        if name in reported:
            continue
        have, want = _field_text(config, descriptor), _field_text(expected, descriptor)
        if have != want:
            model.report(
                "stale",
                f"{name} differs from model.json's render: config.pbtxt has {have}, model.json "
                f"renders {want}; run `ds-triton render --model {model.name}` (or edit "
                "model.json)",
                field=name,
            )


def _field_text(config: mc.ModelConfig, descriptor: FieldDescriptor) -> str:
    """One field of ``config`` as one line of text format ("(unset)" if absent)."""
    part = mc.ModelConfig()
    part.CopyFrom(config)
    for other in mc.ModelConfig.DESCRIPTOR.fields:
        if other.name != descriptor.name:
            part.ClearField(other.name)
    text = text_format.MessageToString(part, as_one_line=True, use_short_repeated_primitives=True)
    return text.strip() or "(unset)"


def has_blocking(problems: Iterable[Problem]) -> bool:
    """Whether any problem is about the files themselves (not this machine)."""
    return any(not p.machine_specific for p in problems)


__all__ = [
    "MACHINE_KINDS",
    "Problem",
    "ProblemKind",
    "check_config",
    "check_model",
    "check_repository",
    "has_blocking",
]
