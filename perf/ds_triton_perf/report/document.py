"""The report as data: sections of tables and figures, rendered to HTML and to markdown.

Both outputs come from one :class:`Report`, so ``report.html`` never has to
parse markdown and ``summary.md`` never embeds images. A figure is drawn only
when the HTML asks for it (``Figure.draw``), so printing the summary costs no
plotting.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Table:
    """Rows of plain values (numbers are formatted by the renderer; ``None`` prints as –)."""

    headers: Sequence[str]
    rows: Sequence[Sequence[Any]]
    title: str = ""


@dataclass(frozen=True)
class Figure:
    """One plot.

    Attributes:
        id: Page anchor, unique in the report (verdict rows link to it).
        title: Heading above the plot.
        caption: One line: what the plot shows and what to look for.
        draw: Renders the PNG; ``None`` when there is nothing to draw.
    """

    id: str
    title: str
    caption: str
    draw: Callable[[], bytes | None]


@dataclass
class Section:
    """A titled block: a short text, its tables and the figures that belong to them."""

    id: str
    title: str
    text: str = ""
    tables: list[Table] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)


@dataclass
class Group:
    """Everything about one model (or one cross-model scenario such as the memory soak)."""

    id: str
    title: str
    sections: list[Section] = field(default_factory=list)


@dataclass
class Report:
    """The whole report: header lines, verdicts, groups, notes."""

    title: str
    header: list[str]
    verdicts: list[dict[str, Any]]
    groups: list[Group]
    how_to_read: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def figure_titles(self) -> dict[str, str]:
        """Figure id → title, for every figure in the report."""
        return {f.id: f.title for g in self.groups for s in g.sections for f in s.figures}


def anchor(*parts: str) -> str:
    """A page anchor from names (``text_embedding``, ``throughput`` → ``text_embedding-throughput``)."""
    return "-".join(re.sub(r"[^A-Za-z0-9_-]+", "_", p).strip("_") for p in parts if p)
