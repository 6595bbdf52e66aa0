"""What the checks of one model folder know, and learn as they go."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from tritonclient.grpc import model_config_pb2 as mc

from ds_triton.repository.checkpoint import CheckpointInfo
from ds_triton.repository.checks.problem import Problem, ProblemKind
from ds_triton.repository.layout import CONFIG_FILENAME, ModelFolder
from ds_triton.repository.machine import Machine
from ds_triton.spec import SPEC_FILENAME, ModelSpec

SPEC_FILE = f"1/{SPEC_FILENAME}"

# What a check needs before it can run: the folder's files on disk, the parsed config, the spec.
Need = Literal["files", "config", "spec"]


@dataclass
class Subject:
    """One model under check.

    ``check_model`` starts from a folder on disk, and its readers fill in the
    config and spec; ``add-model`` starts from a spec and a rendered config for
    a folder that is not written yet. Each check runs once, as soon as what it
    needs is known.
    """

    folder: ModelFolder
    machine: Machine
    on_disk: bool = True
    config: mc.ModelConfig | None = None
    spec: ModelSpec | None = None
    checkpoint: CheckpointInfo | None = None
    problems: list[Problem] = field(default_factory=list)
    done: set[str] = field(default_factory=set)

    @property
    def name(self) -> str:
        return self.folder.name

    def has(self, need: Need) -> bool:
        return self.on_disk if need == "files" else getattr(self, need) is not None

    def report(
        self, kind: ProblemKind, message: str, where: str = CONFIG_FILENAME, field: str = ""
    ) -> None:
        self.problems.append(Problem(self.name, kind, message, where, field))

    def reported_fields(self) -> set[str]:
        return {p.field for p in self.problems if p.field}
