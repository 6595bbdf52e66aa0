"""``ds-triton-client worker | submit | collect``: the queue commands (NATS JetStream).

They need the ``nats`` extra (``pip install 'ds-triton-client[nats]'``); the rest
of the CLI works without it, so nats-py is imported only when one of them runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ConnectionOptions = Callable[[argparse.Namespace], dict[str, Any]]
Sampling = Callable[[argparse.Namespace], dict[str, Any]]

DEFAULT_NATS = "nats://127.0.0.1:4222"
NATS_ENV = "DS_TRITON_NATS_URL"
EXIT_FAILED_ROWS = 3
EXIT_TIMED_OUT = 4

log = logging.getLogger("ds_triton_client.queue")


def _needs_nats() -> None:
    try:
        import nats  # noqa: F401
        import prometheus_client  # noqa: F401
    except ImportError as exc:
        raise SystemExit(
            f"error: the queue commands need the nats extra ({exc.name} is missing): "
            "pip install 'ds-triton-client[nats]'"
        ) from None


def _add_broker_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--nats", default=os.environ.get(NATS_ENV, DEFAULT_NATS),
                        help=f"NATS server URL(s), comma-separated (env {NATS_ENV}; default {DEFAULT_NATS})")
    parser.add_argument("--stream", default="jobs", help="queue name: streams <name>, <name>_results, "
                        "<name>_dead (default: jobs)")  # fmt: skip


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("task", choices=["embed", "generate"])
    parser.add_argument("input", help=".jsonl/.ndjson/.csv of texts or prompts")
    parser.add_argument("--model", default="", help="model name (default: the task's shipped model)")
    parser.add_argument("--field", help="JSON field / CSV column (default: text, else prompt)")
    parser.add_argument("--texts-per-job", type=int, default=1, help="rows per job (default 1)")
    parser.add_argument("--run-id", default="", help="name of the submission (default: a hash of the "
                        "file and these options, so collect finds it by the same options)")  # fmt: skip
    parser.add_argument("--no-progress", action="store_true")


def _spec(args: argparse.Namespace, sampling: Sampling) -> Any:
    from ds_triton_client.queue.producer import RunSpec

    return RunSpec(task=args.task, model=args.model, field=args.field, texts_per_job=args.texts_per_job,
                   sampling=sampling(args) if args.task == "generate" else None, run_id=args.run_id)


def add_queue_commands(commands: Any, connection: ConnectionOptions, sampling: Sampling,
                       add_sampling: Callable[[argparse.ArgumentParser], None]) -> None:  # fmt: skip
    """Register the three commands on the main parser's subparsers."""
    worker = commands.add_parser("worker", help="run queued jobs on the Triton endpoints of --url "
                                 "(NATS JetStream)")  # fmt: skip
    _add_broker_options(worker)
    worker.add_argument("--group", default="workers", help="durable consumer shared by the workers "
                        "that split the jobs (default: workers)")  # fmt: skip
    worker.add_argument("--subject", help="take only these jobs, e.g. jobs.jobs.embed (default: all)")
    worker.add_argument("--max-in-flight", type=int, default=32, help="jobs held at once (default 32)")
    worker.add_argument("--max-attempts", type=int, default=5,
                        help="deliveries before a retryable failure is dead-lettered (default 5)")
    worker.add_argument("--backoff", type=float, default=1.0, help="first retry delay, doubling (default 1s)")
    worker.add_argument("--backoff-max", type=float, default=30.0, help="longest retry delay (default 30s)")
    worker.add_argument("--ack-wait", type=float, default=30.0, help="a job unacknowledged this long "
                        "goes to another worker (default 30s; running jobs extend it)")  # fmt: skip
    worker.add_argument("--drain-timeout", type=float, default=60.0,
                        help="on SIGTERM, time for in-flight jobs to finish (default 60s)")
    worker.add_argument("--metrics-port", type=int, default=0, help="Prometheus /metrics port (0: off)")
    worker.add_argument("--metrics-host", default="0.0.0.0")
    worker.add_argument("--log-level", default="INFO")
    worker.set_defaults(handler=lambda args: cmd_worker(args, connection))

    submit = commands.add_parser("submit", help="publish a JSONL/CSV file as jobs (NATS JetStream)")
    _add_run_options(submit)
    _add_broker_options(submit)
    submit.add_argument("--encoding", choices=["base64", "float"], default="base64",
                        help="embeddings in results: base64 float32 (default) or JSON floats")
    submit.add_argument("--deadline", type=float, help="seconds from now after which a job must not start")
    submit.add_argument("--job-timeout", type=float, help="deadline of each inference call of a job")
    add_sampling(submit)
    submit.set_defaults(handler=lambda args: cmd_submit(args, sampling))

    collect = commands.add_parser("collect", help="gather a submission's results in input order into "
                                  ".npy/.parquet/.jsonl (resumable)")  # fmt: skip
    _add_run_options(collect)
    collect.add_argument("output", help="embed: .npy or .parquet; generate: .jsonl")
    _add_broker_options(collect)
    collect.add_argument("--timeout", dest="collect_timeout", type=float,
                         help="give up after this many seconds (exit 4; rerun to resume)")
    add_sampling(collect)
    collect.set_defaults(handler=lambda args: cmd_collect(args, sampling))


def cmd_worker(args: argparse.Namespace, connection: ConnectionOptions) -> int:
    _needs_nats()
    from ds_triton_client.aclient import AsyncClient
    from ds_triton_client.queue.broker import QueueNames
    from ds_triton_client.queue.metrics import WorkerMetrics
    from ds_triton_client.queue.nats_broker import ConsumerSettings, NatsBroker
    from ds_triton_client.queue.worker import Worker, WorkerOptions

    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")  # fmt: skip
    options = WorkerOptions(max_in_flight=args.max_in_flight, max_attempts=args.max_attempts,
                            backoff_base_s=args.backoff, backoff_max_s=args.backoff_max,
                            timeout_s=args.timeout, drain_timeout_s=args.drain_timeout,
                            heartbeat_s=max(0.5, args.ack_wait / 3))  # fmt: skip
    names = QueueNames(args.stream)

    async def main() -> None:
        broker = await NatsBroker.connect(args.nats, names, name=f"ds-triton-worker {options.worker_id}")
        await broker.ensure_streams()
        await broker.bind_worker(ConsumerSettings(durable=args.group, filter_subject=args.subject,
                                                  ack_wait_s=args.ack_wait))  # fmt: skip
        metrics = WorkerMetrics()
        server = metrics.serve(args.metrics_port, args.metrics_host) if args.metrics_port else None
        client_options = {**connection(args), "max_concurrency": max(8, args.max_in_flight)}
        try:
            async with AsyncClient(args.url, **client_options) as client:
                worker = Worker(broker, client, options, metrics)
                worker.install_signal_handlers()
                log.info("worker %s ready: jobs %s (group %s) -> %s, at most %d in flight%s",
                         options.worker_id, args.subject or names.jobs_filter, args.group, args.url,
                         options.max_in_flight,
                         f", metrics on :{args.metrics_port}/metrics" if server else "")  # fmt: skip
                await worker.run()
        finally:
            if server is not None:
                server.shutdown()
        log.info("worker %s stopped", options.worker_id)

    asyncio.run(main())
    return 0


def cmd_submit(args: argparse.Namespace, sampling: Sampling) -> int:
    _needs_nats()
    from ds_triton_client.queue.broker import QueueNames
    from ds_triton_client.queue.nats_broker import NatsBroker
    from ds_triton_client.queue.producer import submit_file

    spec = _spec(args, sampling)

    async def main() -> Any:
        broker = await NatsBroker.connect(args.nats, QueueNames(args.stream), name="ds-triton-client submit")
        try:
            await broker.ensure_streams()
            return await submit_file(broker, Path(args.input), spec, encoding=args.encoding,
                                     deadline_s=args.deadline, timeout_s=args.job_timeout,
                                     progress=not args.no_progress and not args.json)  # fmt: skip
        finally:
            await broker.close()

    submission = asyncio.run(main())
    if args.json:
        print(json.dumps(submission.as_dict(), indent=2))
        return 0
    print(f"run {submission.run_id}: {submission.jobs} job(s) for {submission.rows} row(s) "
          f"→ results on {submission.reply_to}")  # fmt: skip
    if submission.unreadable_rows:
        print(f"{submission.unreadable_rows} unreadable row(s) were not submitted (collect reports them)")
    print(f"collect with: ds-triton-client collect {args.task} {args.input} OUTPUT --nats {args.nats} "
          f"--stream {args.stream} --run-id {submission.run_id}")  # fmt: skip
    return 0


def cmd_collect(args: argparse.Namespace, sampling: Sampling) -> int:
    _needs_nats()
    from ds_triton_client.jobs import JournalMismatchError
    from ds_triton_client.jobs.journal import partial_dir
    from ds_triton_client.queue.broker import QueueNames
    from ds_triton_client.queue.collector import CollectTimeoutError, collect
    from ds_triton_client.queue.nats_broker import NatsBroker

    output = Path(args.output)
    if output.exists() and not partial_dir(output).exists():
        print(f"{output} is complete (no {partial_dir(output).name}); remove it to collect again",
              file=sys.stderr)  # fmt: skip
        return 0
    spec = _spec(args, sampling)

    async def main() -> Any:
        broker = await NatsBroker.connect(args.nats, QueueNames(args.stream), name="ds-triton-client collect")
        try:
            return await collect(broker, Path(args.input), output, spec, timeout_s=args.collect_timeout,
                                 progress=not args.no_progress and not args.json)  # fmt: skip
        finally:
            await broker.close()

    try:
        summary, stats = asyncio.run(main())
    except JournalMismatchError as exc:
        print(f"collect: {exc}", file=sys.stderr)
        return 2
    except CollectTimeoutError as exc:
        print(f"collect: {exc}", file=sys.stderr)
        return EXIT_TIMED_OUT
    if args.json:
        print(json.dumps({**summary.as_dict(), "results_seen": stats.results,
                          "duplicate_results": stats.duplicates, "foreign_messages": stats.foreign},
                         indent=2))  # fmt: skip
    else:
        print(f"{summary.succeeded}/{summary.total} rows done ({summary.resumed} from an earlier run, "
              f"{stats.duplicates} duplicate result(s) skipped) → {output}")  # fmt: skip
        if summary.errors:
            print(f"{summary.failed} failed row(s) with their error → {summary.errors}")
    return EXIT_FAILED_ROWS if summary.failed else 0
