"""Scenario kinds beyond the core sweeps, one module each, found automatically.

A kind is a scenario with its own measurement, its own report rows and its
own verdicts (overload, a long prompt arriving among streams, the memory
soak; later the OpenAI gateway, queue workers, logprobs overhead). Each module
in this package defines ``KIND = Kind(...)``:

* ``key``: the block in ``perf/scenarios/<model>.yaml`` that configures it
  (a mapping, or a list of mappings, each parsed into ``config``);
* ``run``: measures one model (or, for a ``joint`` kind, every model at once)
  and stores JSON-safe rows with :meth:`KindContext.add_row`;
* ``verdicts``: turns the rows into target rows (:func:`target`);
* ``section``: the report section for one model's rows (tables and figures).

So adding a kind is one new module here plus a block in a scenario file;
nothing else in the bench needs to change.
"""

from __future__ import annotations

import importlib
import pkgutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ds_triton_perf.report.document import Section
    from ds_triton_perf.results import BenchResults
    from ds_triton_perf.steps import StepLog
    from ds_triton_perf.systems import ServerUrls

Row = dict[str, Any]


@dataclass
class KindContext:
    """What a kind may use while it runs.

    Attributes:
        results: The run's results (``extra`` holds kind rows; notes go to ``notes``).
        server: URLs of this project's server.
        model_repository: The served repository (``<repo>/<model>`` is a model folder).
        out_dir: This run's results folder (for logs and inputs).
        log: Progress lines.
        quick: Short runs.
        progress: Show progress bars.
        server_pid: The local tritonserver's pid (memory sampling), when known.
        profile_dir: Where the server writes its step timeline, when it does.
        deadline: ``time.monotonic()`` value by which the run's time budget is spent
            (None: no budget); a kind with an open-ended length (the soak) fits itself
            to :meth:`remaining_s`.
    """

    results: BenchResults
    server: ServerUrls
    model_repository: Path
    out_dir: Path
    log: StepLog
    quick: bool = False
    progress: bool = True
    server_pid: int | None = None
    profile_dir: Path | None = None
    deadline: float | None = None

    def remaining_s(self) -> float | None:
        """Seconds left in the run's time budget (None: no budget)."""
        return None if self.deadline is None else self.deadline - time.monotonic()

    def add_row(self, key: str, model: str, row: Row) -> None:
        self.results.extra.setdefault(key, []).append({"model": model, **row})


@dataclass(frozen=True)
class Kind:
    """A scenario kind (see the module docstring).

    Attributes:
        key: Scenario-file key and results key.
        title: Human title (report headings).
        config: Dataclass one block item is parsed into; it must have a ``name`` field.
        run: ``run(ctx, scenarios, config)``; for a joint kind
            ``run(ctx, [(scenarios, config), ...])`` once after every model's suite.
        verdicts: ``verdicts(results, rows)`` appends target rows for this kind's rows.
        section: ``section(model, rows, results)`` → the model's report section, or None.
        tasks: Model tasks the kind applies to (a block under another task is an error).
        joint: Runs once across models instead of once per model.
    """

    key: str
    title: str
    config: type
    run: Callable[..., None]
    verdicts: Callable[[BenchResults, list[Row]], None]
    section: Callable[[str, list[Row], BenchResults], Section | None]
    tasks: tuple[str, ...] = ("embedding", "generation")
    joint: bool = False


def registry() -> dict[str, Kind]:
    """Every kind module in this package, by key (imported on first call)."""
    if not _REGISTRY:
        for module in pkgutil.iter_modules(__path__):
            kind = getattr(importlib.import_module(f"{__name__}.{module.name}"), "KIND", None)
            if isinstance(kind, Kind):
                _REGISTRY[kind.key] = kind
    return _REGISTRY


def target(results: BenchResults, model: str, name: str, bar: float, value: float | None, *,
           lower_is_better: bool = False, unit: str = "×", detail: str = "", figure: str = "") -> None:
    """Append a verdict row; ``figure`` names the figure (``<model>-<figure>``) that explains it."""
    from ds_triton_perf.analysis import add_target

    add_target(results, name, bar, value, lower_is_better=lower_is_better, detail=detail,
               model=model, figure=figure, unit=unit)


_REGISTRY: dict[str, Kind] = {}
