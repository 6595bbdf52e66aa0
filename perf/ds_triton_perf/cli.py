"""``ds-triton-perf``: the benchmark suite's command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ds_triton_perf.scenarios import SCENARIO_DIR
from ds_triton_perf.systems import SYSTEMS, ServerUrls


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ds-triton-perf", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    bench = commands.add_parser("bench", help="run the benchmark suite and write a report")
    bench.add_argument("--quick", action="store_true", help="short runs, fewer points (~2 minutes)")
    bench.add_argument("--out", type=Path, default=Path("perf/results"), help="results parent folder")
    bench.add_argument("--scenarios", type=Path, default=SCENARIO_DIR, help="folder of <model>.yaml files")
    bench.add_argument("--model-repository", type=Path, default=Path("model_repository"))
    bench.add_argument("--http-url",
                       help="running server's HTTP host:port (default: probe :8000, else start one)")
    bench.add_argument("--grpc-url", help="running server's gRPC host:port")
    bench.add_argument("--metrics-url", help="running server's metrics URL (http://host:port/metrics)")
    bench.add_argument("--start-server", action="store_true",
                       help="always start a server on free ports (never use one on :8000)")
    bench.add_argument("--profile-dir", type=Path,
                       help="where a server you run writes its step timeline (its DS_TRITON_PROFILE_DIR)")
    bench.add_argument("--systems", nargs="+", choices=SYSTEMS, default=list(SYSTEMS),
                       help="systems the load generator drives")
    bench.add_argument("--only", nargs="+", default=[], metavar="SCENARIO",
                       help="run only these scenario names ('ceiling' for the in-process ceiling, "
                            "'static_batches' for the generation baseline; kinds by name, e.g. "
                            "overload, long_prompt, soak)")
    bench.add_argument("--model", nargs="+", default=[], dest="models", help="only these models")
    bench.add_argument("--no-progress", action="store_true", help="no progress bars")
    bench.add_argument("--budget-min", type=float, default=None, metavar="MINUTES",
                       help="no point starts after this many minutes (the rest are skipped with a note; "
                            "the memory soak shortens to fit); `make bench` passes 33")
    bench.set_defaults(func=_bench)
    readme = commands.add_parser("readme",
                                 help="write a run's results into the README's 'Latest results' block")
    readme.add_argument("results_dir", type=Path, help="a perf/results/<timestamp> folder")
    readme.add_argument("--write", type=Path, metavar="README",
                        help="replace the block between the markers in this file (default: print it)")
    readme.set_defaults(func=_readme)
    return parser


def _readme(args: argparse.Namespace) -> int:
    from ds_triton_perf.report.readme import ReadmeError, latest_results_block, refresh_readme

    try:
        if args.write is None:
            print(latest_results_block(args.results_dir))
        else:
            refresh_readme(args.write, args.results_dir)
            print(f"{args.write}: 'Latest results' now shows {args.results_dir}")
    except ReadmeError as exc:
        print(f"ds-triton-perf readme: {exc}", file=sys.stderr)
        return 1
    return 0


def _bench(args: argparse.Namespace) -> int:
    from ds_triton_perf.bench import BenchFailed, BenchOptions, run_bench

    server = None
    if args.http_url or args.grpc_url:
        if not (args.http_url and args.grpc_url):
            raise SystemExit("--http-url and --grpc-url go together")
        server = ServerUrls(args.http_url, args.grpc_url, args.metrics_url)
    try:
        run_bench(BenchOptions(
            quick=args.quick, out_root=args.out, scenario_dir=args.scenarios,
            model_repository=args.model_repository, server=server, systems=args.systems,
            only=args.only, models=args.models, progress=not args.no_progress,
            start_server=args.start_server, profile_dir=args.profile_dir, budget_min=args.budget_min,
        ))
    except BenchFailed as exc:
        print(f"ds-triton-perf bench: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("ds-triton-perf bench: interrupted; the report has what was measured", file=sys.stderr)
        return 130
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
