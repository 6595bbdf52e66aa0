"""``ds-triton``: the server-side command line (serve, and the model repository tools)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ds_triton.commands import COMMANDS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ds-triton", description="Serve DeepSpeed models on Triton Inference Server."
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    for register in COMMANDS:
        register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
