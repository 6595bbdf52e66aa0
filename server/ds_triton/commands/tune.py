"""``ds-triton tune MODEL``: search batching and instance settings on a live server.

The command lives in ``ds_triton_perf.tuning`` (it drives the project's load generator).
"""

from __future__ import annotations

import argparse

from ds_triton_perf.tuning.cli import TUNE_HELP, add_arguments, run


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "tune",
        help="find the best batching and instance settings for a model on this machine",
        description=TUNE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    parser.set_defaults(func=run)
