"""``summary.md``: the report's verdicts and tables as markdown, also printed at the end of a run."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ds_triton_perf.report.build import build_report, cell
from ds_triton_perf.report.document import Report
from ds_triton_perf.results import BenchResults


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v).replace("|", "\\|") for v in row) + " |" for row in rows]
    return "\n".join(lines)


def summary_markdown(results: BenchResults) -> str:
    return report_markdown(build_report(results))


def report_markdown(report: Report) -> str:
    """Verdicts first, then each model's tables; figures are named (they live in report.html)."""
    titles = report.figure_titles()
    parts = [f"# {report.title}", " ".join(report.header),
             "Ratios are this project ÷ the other system (above 1.0: this project is ahead)."]
    if report.verdicts:
        parts += ["## Verdicts (benchmark outputs, not tests)", table(
            ["target", "bar", "measured", "verdict", "detail", "explained by (report.html)"],
            [[t["target"], t["bar"], t["measured"], t["verdict"], t["detail"],
              titles.get(_figure_id(t), "–")] for t in report.verdicts])]
    for group in report.groups:
        parts.append(f"## {group.title}")
        for section in group.sections:
            if not section.tables:  # figures live in report.html
                continue
            parts.append(f"### {section.title}")
            if section.text:
                parts.append(section.text)
            for item in section.tables:
                if item.title:
                    parts.append(f"{item.title}:")
                parts.append(table(item.headers, item.rows))
    if report.notes:
        parts += ["## Notes", "\n".join(f"- {note}" for note in report.notes)]
    return "\n\n".join(parts) + "\n"


def _figure_id(target: dict[str, Any]) -> str:
    from ds_triton_perf.report.document import anchor

    return anchor(target.get("model", ""), target.get("figure", "")) if target.get("figure") else ""
