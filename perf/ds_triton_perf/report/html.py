"""``report.html``: one self-contained page (plots embedded as base64 PNG)."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from ds_triton_perf.report.plots import FIGURES
from ds_triton_perf.report.summary import summary_markdown
from ds_triton_perf.results import BenchResults

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; color: #222; }
table { border-collapse: collapse; font-size: 12px; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 3px 6px; text-align: right; }
th { background: #f0f0f0; } td:first-child, th:first-child { text-align: left; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
.help { color: #555; font-size: 13px; }
"""

_HOW_TO_READ = """
<p class="help"><b>How to read this.</b> Throughput is measured in closed loop (N requests always in
flight); latency under load in open loop (Poisson arrivals at a fixed rate, latency counted from each
request's <i>intended</i> send time, so a stalled server cannot hide its backlog). Ratios are this
project ÷ the other system. <i>Queue vs compute</i> comes from Triton's own statistics: a large queue
share at high load means the model instance is saturated (add instances or faster compute); a large
queue share at low load means the dynamic batcher's delay is too long. <i>Achieved batch size</i> is
inferences ÷ executions: close to 1 means requests are not being batched.</p>
"""


def write_html(results: BenchResults, path: Path) -> Path:
    """Write the report with every figure that has data."""
    sections = [f"<style>{_STYLE}</style>", _HOW_TO_READ, _markdown_to_html(summary_markdown(results))]
    models = sorted({r.model for r in results.load_runs} | {m for m, _ in results.ceiling}
                    | {p.model for p in results.perf_analyzer})
    for model in models:
        sections.append(f"<h2>Plots: {html.escape(model)}</h2>")
        for title, figure in FIGURES.items():
            png = figure(results, model)
            if png is None:
                continue
            encoded = base64.b64encode(png).decode()
            sections.append(f"<h3>{html.escape(title)}</h3><img alt='{html.escape(title)}' "
                            f"src='data:image/png;base64,{encoded}'>")
    path.write_text("<!doctype html><html><head><meta charset='utf-8'><title>ds-triton benchmark"
                    "</title></head><body>" + "\n".join(sections) + "</body></html>")
    return path


def _markdown_to_html(markdown: str) -> str:
    """Just enough markdown for the summary: headings, tables, bullets, paragraphs."""
    out: list[str] = []
    for block in markdown.split("\n\n"):
        lines = block.strip().splitlines()
        if not lines:
            continue
        if lines[0].startswith("#"):
            level = len(lines[0]) - len(lines[0].lstrip("#"))
            out.append(f"<h{level}>{html.escape(lines[0].lstrip('# '))}</h{level}>")
        elif lines[0].startswith("|"):
            rows = [[c.strip() for c in line.strip("|").split(" | ")] for line in lines if "---|" not in line]
            head = "".join(f"<th>{html.escape(c)}</th>" for c in rows[0])
            body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                           for row in rows[1:])
            out.append(f"<table><tr>{head}</tr>{body}</table>")
        elif lines[0].startswith("- "):
            out.append("<ul>" + "".join(f"<li>{html.escape(line[2:])}</li>" for line in lines) + "</ul>")
        else:
            out.append(f"<p>{html.escape(' '.join(lines))}</p>")
    return "\n".join(out)
