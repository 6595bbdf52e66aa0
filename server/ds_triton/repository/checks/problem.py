"""One mistake in one model folder, as ``ds-triton check`` prints it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ds_triton.repository.layout import CONFIG_FILENAME

ProblemKind = Literal[
    "layout", "schema", "spec", "name", "checkpoint", "interface", "decoupled", "queue", "gpu",
    "cores", "stale",
]

# Problems that depend on the machine the check runs on, not on the files: a
# repository prepared on a laptop for a GPU server has them there and not there.
MACHINE_KINDS: frozenset[str] = frozenset({"gpu", "cores"})


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
