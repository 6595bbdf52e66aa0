"""``report.html``: one self-contained page (plots embedded as base64 PNG), built from a Report.

Layout: the verdicts first, each linking to the figure that explains it;
then one part per model where every section puts its tables and their
figures side by side. No markdown is involved: text is escaped HTML.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

from ds_triton_perf.report.build import build_report, cell
from ds_triton_perf.report.document import Figure, Report, Section, Table, anchor
from ds_triton_perf.results import BenchResults

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1400px; margin: 1.5em auto; padding: 0 1em;
       color: #222; }
table { border-collapse: collapse; font-size: 12px; margin: 0.5em 0; }
th, td { border: 1px solid #ccc; padding: 3px 6px; text-align: right; vertical-align: top; }
th { background: #f0f0f0; } td:first-child, th:first-child { text-align: left; }
.verdicts td:nth-child(1), .verdicts td:nth-child(5), .verdicts td:nth-child(6) { text-align: left; }
.met { color: #1a7f37; font-weight: 600; } .missed { color: #c62828; font-weight: 600; }
.not-measured { color: #777; }
section.block { display: flex; flex-wrap: wrap; gap: 1.5em; align-items: flex-start;
                border-top: 1px solid #eee; padding-top: 0.5em; }
section.block > .tables { flex: 1 1 480px; min-width: 0; overflow-x: auto; }
section.block > .figures { flex: 1 1 560px; }
figure { margin: 0 0 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 13px; color: #444; } .caption-title { font-weight: 600; }
.help { color: #555; font-size: 13px; } nav a { margin-right: 1em; }
"""


def write_html(results: BenchResults, path: Path) -> Path:
    """Write the report with every figure that has data."""
    path.write_text(render_html(build_report(results)))
    return path


def render_html(report: Report) -> str:
    drawn = {f.id: png for f, png in _draw_all(report)}
    body = [f"<h1>{_e(report.title)}</h1>", "".join(f"<p>{_e(line)}</p>" for line in report.header)]
    body.append(_verdicts(report, drawn))
    body.append("<nav>" + "".join(f"<a href='#{g.id}'>{_e(g.title)}</a>" for g in report.groups)
                + "<a href='#notes'>Notes</a></nav>")
    body.append("<div class='help'>" + "".join(f"<p>{_e(p)}</p>" for p in report.how_to_read) + "</div>")
    for group in report.groups:
        body.append(f"<h2 id='{group.id}'>{_e(group.title)}</h2>")
        body += [_section(section, drawn) for section in group.sections
                 if section.tables or any(f.id in drawn for f in section.figures)]
    body.append("<h2 id='notes'>Notes</h2>" + ("<ul>" + "".join(f"<li>{_e(n)}</li>" for n in report.notes)
                                               + "</ul>" if report.notes else "<p>None.</p>"))
    return ("<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>{_e(report.title)}</title><style>{_STYLE}</style></head><body>"
            + "\n".join(body) + "</body></html>")


def _draw_all(report: Report) -> list[tuple[Figure, bytes]]:
    out = []
    for group in report.groups:
        for section in group.sections:
            for figure in section.figures:
                try:
                    png = figure.draw()
                except Exception as exc:  # one plot's bug must not cost the page
                    report.notes.append(f"figure '{figure.title}' could not be drawn "
                                        f"({type(exc).__name__}: {exc})")
                    continue
                if png:
                    out.append((figure, png))
    return out


def _verdicts(report: Report, drawn: dict[str, bytes]) -> str:
    if not report.verdicts:
        return ""
    titles = report.figure_titles()
    rows = []
    for target in report.verdicts:
        figure = anchor(target.get("model", ""), target["figure"]) if target.get("figure") else ""
        if figure in drawn:
            link = f"<a href='#{figure}'>{_e(titles[figure])}</a>"
        elif target.get("model") and anchor(target["model"]) in {g.id for g in report.groups}:
            link = f"<a href='#{anchor(target['model'])}'>{_e(target['model'])} (no plot: no data)</a>"
        else:
            link = "–"
        verdict = target["verdict"]
        rows.append(f"<tr><td>{_e(target['target'])}</td><td>{_e(target['bar'])}</td>"
                    f"<td>{_e(cell(target['measured']))}</td>"
                    f"<td class='{verdict.replace(' ', '-')}'>{_e(verdict)}</td>"
                    f"<td>{_e(target['detail'])}</td><td>{link}</td></tr>")
    met = sum(t["verdict"] == "met" for t in report.verdicts)
    return (f"<section id='verdicts'><h2>Verdicts</h2><p>{met} of {len(report.verdicts)} targets met "
            "(benchmark outputs, not tests). Each row links to the plot that explains it.</p>"
            "<table class='verdicts'><tr><th>target</th><th>bar</th><th>measured</th><th>verdict</th>"
            "<th>detail</th><th>explained by</th></tr>" + "".join(rows) + "</table></section>")


def _section(section: Section, drawn: dict[str, bytes]) -> str:
    tables = "".join(_table(t) for t in section.tables)
    figures = "".join(_figure(f, drawn[f.id]) for f in section.figures if f.id in drawn)
    text = f"<p class='help'>{_e(section.text)}</p>" if section.text else ""
    return (f"<h3 id='{section.id}'>{_e(section.title)}</h3><section class='block'>"
            f"<div class='tables'>{text}{tables}</div>"
            + (f"<div class='figures'>{figures}</div>" if figures else "") + "</section>")


def _table(table: Table) -> str:
    title = f"<p class='help'>{_e(table.title)}</p>" if table.title else ""
    head = "".join(f"<th>{_e(h)}</th>" for h in table.headers)
    body = "".join("<tr>" + "".join(f"<td>{_e(cell(v))}</td>" for v in row) + "</tr>" for row in table.rows)
    return f"{title}<table><tr>{head}</tr>{body}</table>"


def _figure(figure: Figure, png: bytes) -> str:
    encoded = base64.b64encode(png).decode()
    return (f"<figure id='{figure.id}'><img alt='{_e(figure.title)}' src='data:image/png;base64,{encoded}'>"
            f"<figcaption><span class='caption-title'>{_e(figure.title)}.</span> {_e(figure.caption)}"
            "</figcaption></figure>")


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)
