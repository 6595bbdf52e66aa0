"""The README's "Latest results" block, written from a finished run's ``results.json``.

``ds-triton-perf readme perf/results/<ts> --write README.md`` (``make bench-readme``
for the newest run) replaces everything between the two markers below in the
README with the run's machine, date, command, its throughput comparisons and
every verdict, so no figure in the README is typed by hand.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ds_triton_perf.report.summary import table

BEGIN = "<!-- bench:latest:begin (written by `ds-triton-perf readme`; edit the run, not this block) -->"
END = "<!-- bench:latest:end -->"


class ReadmeError(RuntimeError):
    """The README has no (or broken) markers, or the results folder has no results.json."""


def latest_results_block(results_dir: Path, shown_as: str | None = None) -> str:
    """Markdown for the README from ``results_dir/results.json``.

    Args:
        results_dir: A ``perf/results/<timestamp>`` folder.
        shown_as: How to name the folder in the text (default: its path as given).
    """
    path = results_dir / "results.json"
    if not path.is_file():
        raise ReadmeError(f"{path}: no results.json (is this a `ds-triton-perf bench` results folder?)")
    data: dict[str, Any] = json.loads(path.read_text())
    meta = data.get("meta", {})
    where = shown_as or str(results_dir)
    elapsed = meta.get("elapsed_s")
    lines = [
        f"Machine: {meta.get('machine', '?')} · Date: {meta.get('date', '?')} · Command: "
        f"`{meta.get('command', '?')}`{' (quick mode)' if meta.get('quick') else ''} · "
        f"Total time: {f'{elapsed / 60:.1f} min' if elapsed is not None else '?'} · "
        f"Load average at start {meta.get('load_average_start', '?')}, at end "
        f"{meta.get('load_average_end', '?')} (`{where}/summary.md`, `{where}/report.html`).",
    ]
    comparisons = data.get("comparisons", [])
    if comparisons:
        lines += ["", "Throughput (ratios are this project ÷ the other system):", "", table(
            ["model", "texts", "system", "items/s", "at", "p99 ms at best", "project ÷ system"],
            [[c.get("model"), c.get("texts"), c.get("system"), c.get("best_items_per_s"), c.get("at"),
              c.get("p99_ms_at_best"), c.get("project_ratio")] for c in comparisons])]
    targets = data.get("targets", [])
    if targets:
        met = sum(t.get("verdict") == "met" for t in targets)
        lines += ["", f"Verdicts ({met} of {len(targets)} targets met; benchmark outputs, not tests):", "",
                  table(["model", "target", "bar", "measured", "verdict", "detail"],
                        [[t.get("model") or "all", t.get("target"), t.get("bar"), t.get("measured"),
                          t.get("verdict"), t.get("detail")] for t in targets])]
    failed, skipped = meta.get("failed_points") or [], meta.get("skipped_points") or []
    if failed or skipped:
        lines += ["", "Not measured in this run: "
                  + "; ".join([f"{p} (failed)" for p in failed] + [f"{p} (time budget)" for p in skipped])
                  + ". The notes in its summary say why."]
    return "\n".join(lines)


def replace_block(readme: str, block: str) -> str:
    """``readme`` with the text between the markers replaced by ``block``."""
    start, end = readme.find(BEGIN), readme.find(END)
    if start < 0 or end < 0 or end < start or readme.count(BEGIN) != 1 or readme.count(END) != 1:
        raise ReadmeError(f"the README needs exactly one pair of markers:\n{BEGIN}\n...\n{END}")
    return readme[:start + len(BEGIN)] + "\n" + block.strip() + "\n" + readme[end:]


def refresh_readme(readme_path: Path, results_dir: Path, shown_as: str | None = None) -> str:
    """Rewrite the README's results block from ``results_dir``; returns the block written."""
    block = latest_results_block(results_dir, shown_as)
    readme_path.write_text(replace_block(readme_path.read_text(), block))
    return block
