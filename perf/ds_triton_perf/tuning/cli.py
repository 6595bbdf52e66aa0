"""``ds-triton tune``'s options and what the command does with them.

Kept free of heavy imports at module level: ``ds-triton`` builds every
subcommand's parser at start.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

TUNE_HELP = """\
Find the best batching and instance settings of MODEL on this machine, under a latency budget.
It starts its own tritonserver on a scratch copy of the model folder, deploys each candidate
(model.json written, config rendered, the model reloaded) and measures it under load.

examples:
  ds-triton tune text_embedding --budget 10m                        # quick search, max throughput
  ds-triton tune text_embedding --p99-ms 50 --apply                 # ... with p99 <= 50 ms, then apply
  ds-triton tune text_embedding --objective latency --rate 40       # lowest p99 at 40 requests/s
  ds-triton tune text_generation --ttft-p99-ms 200 --itl-p99-ms 30  # tokens/s under TTFT and ITL limits
  ds-triton tune text_embedding --compare-modes                     # brute vs quick, one run
  ds-triton tune --resume perf/results/tune-20261128-101500         # after Ctrl-C
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", nargs="?", help="the model folder's name (not needed with --resume)")
    parser.add_argument("--repository", type=Path, default=Path("model_repository"))
    search = parser.add_argument_group("search")
    search.add_argument("--mode", choices=["quick", "brute"], default="quick",
                        help="quick: hill climbing with successive halving (default); "
                             "brute: every grid point")
    search.add_argument("--compare-modes", action="store_true",
                        help="run brute, then quick, on one server; report quick's gap and time share")
    search.add_argument("--budget", help="measurement time for the search, e.g. 10m, 90s, 1h (default: none)")
    search.add_argument("--set", action="append", default=[], metavar="NAME=V1,V2",
                        help="values of one setting (repeatable); one value fixes it. Settings: instances, "
                             "threads, max_batch_size, preferred (none/max/half/quarter or 8+32), "
                             "max_queue_delay_us; generation: max_concurrent_sequences, "
                             "max_batch_total_tokens, max_prefill_tokens")
    search.add_argument("--resume", type=Path, metavar="RUN_DIR",
                        help="continue an interrupted run from its folder (its options are reused)")
    goal = parser.add_argument_group("objective (as Model Analyzer states it)")
    goal.add_argument("--objective", choices=["throughput", "latency", "tokens"],
                      help="throughput (embedding default), latency (lowest p99 at --rate), or tokens "
                           "(generation default)")
    goal.add_argument("--p99-ms", type=float,
                      help="p99 latency limit (default: the model's batching.latency_budget_ms, if any)")
    goal.add_argument("--rate", type=float, help="requests/s for --objective latency (open loop)")
    goal.add_argument("--ttft-p99-ms", type=float, help="generation: time-to-first-token p99 limit")
    goal.add_argument("--itl-p99-ms", type=float, help="generation: inter-token latency p99 limit")
    load = parser.add_argument_group("load")
    load.add_argument("--load", choices=["loadgen", "perf_analyzer"], default="loadgen",
                      help="the project's load generator (default) or perf_analyzer (embedding)")
    load.add_argument("--requests", type=Path, metavar="FILE.jsonl",
                      help='one request per line: {"text": ...} / {"texts": [...]} or '
                           '{"prompt": ..., "max_tokens": N} (default: the scenario texts)')
    load.add_argument("--texts", metavar="MIX", help="text mix of the scenario file (default: mixed)")
    load.add_argument("--request-batch", type=int, default=1, help="texts per embedding request")
    load.add_argument("--max-concurrency", type=int, default=64, help="top of the concurrency ladder")
    load.add_argument("--window", default="2s", help="length of one measurement window (default 2s)")
    load.add_argument("--min-windows", type=int, default=3)
    load.add_argument("--max-windows", type=int, default=8, help="the cap on windows per level")
    load.add_argument("--ci", type=float, default=0.05,
                      help="stop a level once its 95%% interval is within this share (default 0.05)")
    result = parser.add_argument_group("result")
    result.add_argument("--validate-top", type=int, default=5,
                        help="hold this many finalists to the latency bars (0: skip)")
    result.add_argument("--ceiling", action="store_true",
                        help="embedding: also measure the in-process ceiling for the throughput bar")
    result.add_argument("--require-bars", action="store_true",
                        help="recommend only a finalist that meets the latency bars")
    result.add_argument("--apply", action="store_true",
                        help="write the recommended model.json, render config.pbtxt and check the model")
    result.add_argument("--out", type=Path, default=Path("perf/results"), help="parent of tune-<timestamp>/")
    result.add_argument("--no-progress", action="store_true", help="print only the summary")


def run(args: argparse.Namespace) -> int:
    from ds_triton_perf.tuning.command import tune

    return tune(args)


def fail(message: str) -> int:
    print(f"ds-triton tune: {message}", file=sys.stderr)
    return 2
