"""Human-readable output of a bench run: ``summary.md`` and ``report.html`` with plots."""

from ds_triton_perf.report.html import write_html
from ds_triton_perf.report.summary import summary_markdown

__all__ = ["summary_markdown", "write_html"]
