"""Measure the served models: scenarios, an open-loop load generator, peers and reports.

``ds-triton-perf bench`` runs the default suite; the pieces are usable alone:
:mod:`ds_triton_perf.loadgen` (asyncio load generator over any request
function), :mod:`ds_triton_perf.perf_analyzer` (Triton's own tool),
:mod:`ds_triton_perf.triton_stats` (server-side breakdown) and
:mod:`ds_triton_perf.report` (HTML + markdown).
"""
