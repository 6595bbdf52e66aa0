"""``ds-triton-gateway``: serve the OpenAI API in front of Triton replicas until SIGTERM / Ctrl-C.

On SIGTERM the gateway stops taking connections and lets the requests and
streams it carries finish (up to ``--drain-timeout``), as ``ds-triton serve``
drains Triton.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from ds_triton_gateway.settings import add_arguments, from_arguments


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ds-triton-gateway",
        description="OpenAI-compatible API (models, embeddings, completions, chat) in front of Triton "
        "replicas of a ds-triton model repository.",
    )
    add_arguments(parser)
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=30.0,
        help="on SIGTERM, seconds to let requests in flight finish",
    )
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = from_arguments(args)
    except ValueError as exc:
        print(f"ds-triton-gateway: {exc}", file=sys.stderr)
        return 2
    import uvicorn

    from ds_triton_gateway.app import create_app

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    shown = "localhost" if settings.host in ("127.0.0.1", "localhost") else settings.host
    keys = "API key required" if settings.api_keys.required else "no API key"
    print(f"ds-triton-gateway: OpenAI API on http://{shown}:{settings.port}/v1 ({keys}) -> {settings.urls}",
          file=sys.stderr, flush=True)  # fmt: skip
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=args.log_level,
        access_log=settings.access_log,
        timeout_graceful_shutdown=int(args.drain_timeout),
    )
    return 0
