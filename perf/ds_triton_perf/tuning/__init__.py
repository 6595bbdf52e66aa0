"""``ds-triton tune``: search a model's batching and instance settings on a live server.

The pieces, each usable alone: :mod:`.space` (dimensions, grid, neighbours),
:mod:`.settings` (what a candidate means in ``model.json``), :mod:`.limits`
(what this machine can run), :mod:`.objective` and :mod:`.ladder` (what a
measurement must show), :mod:`.search` (``brute`` and ``quick`` over any
measurement function) with :mod:`.journal` (checkpoint and resume),
:mod:`.live`, :mod:`.drivers` and :mod:`.evaluate` (the live measurement),
:mod:`.validate` (the latency bars), :mod:`.run` (a whole run), and
:mod:`.report` / :mod:`.patch` (what it writes).
"""
