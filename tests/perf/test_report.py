"""The report as a reader meets it: verdicts linked to plots, captions and units, real HTML in a browser.

Built from hand-made results (``synthetic``) so every section has data; the
same checks run on a real tiny bench run in ``test_bench_end_to_end``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from matplotlib.figure import Figure as MplFigure

from ds_triton_perf.report import plots
from ds_triton_perf.report.build import build_report
from ds_triton_perf.report.html import write_html
from ds_triton_perf.report.summary import summary_markdown
from tests.perf import synthetic
from tests.perf.chromium import SCREEN, inspect_page


@pytest.fixture(scope="module")
def results() -> synthetic.BenchResults:
    return synthetic.results()


def assert_page_is_clean(html_path: Path) -> None:
    """What a reader's browser must see: no errors, every image decodes, no raw markdown, a page drawn.

    The screenshot of the top of the page is kept beside the report (``report.png``).
    """
    page = inspect_page(html_path)
    html_path.with_suffix(".png").write_bytes(page.screenshot)
    _assert_drawn(html_path.with_suffix(".png"))
    assert page.errors == []
    assert page.images and all(image["ok"] for image in page.images), page.images
    assert page.figures == page.captions == len(page.images)
    assert page.dangling_links == []
    assert "**" not in page.text and "|---|" not in page.text and "---|" not in page.text
    assert 0 <= page.text.find("Verdicts") < page.text.find("Throughput")


def _assert_drawn(png: Path) -> None:
    """A real screenshot: the browser's size, and not one flat colour (the page was painted)."""
    import matplotlib.image

    pixels = matplotlib.image.imread(png)
    assert pixels.shape[:2] == (SCREEN[1], SCREEN[0])
    assert pixels[..., :3].std() > 0.05  # text, tables and the verdict colours, not a blank page


def test_the_report_opens_cleanly_in_headless_chromium(results: synthetic.BenchResults,
                                                        tmp_path: Path) -> None:
    path = write_html(results, tmp_path / "report.html")
    assert_page_is_clean(path)
    html = path.read_text()
    # Every verdict row links to the figure that explains it, and that figure is on the page.
    for target in results.targets:
        anchor = f"{target['model']}-{target['figure']}" if target["model"] else target["figure"]
        assert f"href='#{anchor}'" in html, target["target"]
        assert f"<figure id='{anchor}'>" in html


def test_generation_sections_use_the_engine_and_embedding_keeps_triton_statistics(
        results: synthetic.BenchResults) -> None:
    report = build_report(results)
    titles = {g.title: [s.title for s in g.sections] for g in report.groups}
    assert "Batching (engine decode-batch occupancy)" in titles["text_generation"]
    assert "Where the time goes (engine)" in titles["text_generation"]
    assert "Batching (Triton's executions)" not in titles["text_generation"]
    assert "Batching (Triton's executions)" in titles["text_embedding"]
    assert "Where the time goes (Triton's statistics)" in titles["text_embedding"]
    assert titles["All models together"] == ["Memory soak (every model at once, good and bad inputs)"]
    generation = next(g for g in report.groups if g.title == "text_generation")
    time_table = next(s for s in generation.sections if s.title.startswith("Where the time")).tables[0]
    row = dict(zip(time_table.headers, time_table.rows[-1], strict=True))
    # 16 streams: engine TTFT 12 ms = engine wait + prefill forward (timeline); step time from the timeline.
    assert row["engine wait"] + row["prefill forward"] == pytest.approx(12.0)
    assert row["decode step ms"] == pytest.approx(4.31, abs=0.1)
    assert row["generated tokens per step"] == pytest.approx(6400 / 420)


def test_every_plot_has_axis_labels_with_units_and_a_caption(results: synthetic.BenchResults,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    drawn: list[MplFigure] = []
    real_render = plots.render

    def capture(figure: MplFigure) -> bytes:
        drawn.append(figure)
        for axes in figure.axes:
            if not axes.has_data():
                continue
            assert any(unit in axes.get_ylabel() for unit in ("(", "/", "%", "MB", "ms")), axes.get_ylabel()
            shared_x = axes.get_shared_x_axes().get_siblings(axes)
            assert any(a.get_xlabel() for a in shared_x), axes.get_title()
        return real_render(figure)

    monkeypatch.setattr(plots, "render", capture)
    report = build_report(results)
    figures = [f for g in report.groups for s in g.sections for f in s.figures]
    assert all(f.caption and "\n" not in f.caption for f in figures)
    pngs = [f.draw() for f in figures]
    assert all(png is None or png.startswith(b"\x89PNG") for png in pngs)
    assert sum(png is not None for png in pngs) == len(drawn) >= 15


def test_summary_markdown_starts_with_the_verdicts(results: synthetic.BenchResults) -> None:
    summary = summary_markdown(results)
    assert summary.index("## Verdicts") < summary.index("## text_embedding")
    assert "data:image" not in summary
    assert "| text_generation tokens/s, 16 streams ÷ static batches | ≥ 1.5× |" in summary
    assert "naive REST" in summary and "≥ 3×" not in summary
