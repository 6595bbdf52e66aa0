"""``ds-triton-client``: embed, generate (streamed), health, models, stats, batch, and the queue
commands (worker, submit, collect) from a terminal.

Readable output by default; ``--json`` prints one JSON document for scripts.
Exit codes: 0 ok, 1 request failed, 2 bad usage, 3 batch or collect finished with
failed rows, 4 collect timed out (rerun to resume), 130 interrupted (a batch or a
collect resumes when rerun).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ds_triton_client._base import DEFAULT_EMBED_MODEL, DEFAULT_GENERATE_MODEL
from ds_triton_client.aclient import AsyncClient
from ds_triton_client.client import Client
from ds_triton_client.codec import GenerationResult
from ds_triton_client.errors import ClientError
from ds_triton_client.jobs import JournalMismatchError, run_batch
from ds_triton_client.jobs.journal import partial_dir
from ds_triton_client.queue.cli import add_queue_commands

DEFAULT_URL = "http://127.0.0.1:8000"


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False, default=str))


def _sampling(args: argparse.Namespace) -> dict[str, Any]:
    values = {
        "max_tokens": args.max_tokens,
        "temperature": args.temperature,
        "top_p": args.top_p,
        "top_k": args.top_k,
        "seed": args.seed,
        "stop": args.stop,
        "ignore_eos": True if args.ignore_eos else None,
        "logprobs": args.logprobs,
    }
    return {k: v for k, v in values.items() if v is not None}


def _add_sampling(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max-tokens", type=int)
    parser.add_argument("--temperature", type=float)
    parser.add_argument("--top-p", type=float)
    parser.add_argument("--top-k", type=int)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--stop", action="append", help="stop string (repeatable)")
    parser.add_argument("--ignore-eos", action="store_true")
    parser.add_argument(
        "--logprobs", type=int, metavar="N",
        help="log-probability of each generated token and its N most likely alternatives",
    )  # fmt: skip


ADMIN_KEY_ENV = "DS_TRITON_ADMIN_KEY"


def _connection(args: argparse.Namespace) -> dict[str, Any]:
    """Client options from the connection flags: protocol, deadline, TLS files, headers, admin key."""
    headers: dict[str, str] = {}
    for item in args.header or []:
        name, sep, value = item.partition(":")
        if not sep or not name.strip():
            raise ValueError(f"--header {item!r}: expected 'Name: value'")
        headers[name.strip()] = value.strip()
    admin_key = os.environ.get(ADMIN_KEY_ENV) or None
    if args.admin_key_file:
        try:
            admin_key = Path(args.admin_key_file).read_text().strip()
        except OSError as exc:
            raise ValueError(f"--admin-key-file {args.admin_key_file}: {exc.strerror or exc}") from None
    return {
        "protocol": args.protocol,
        "timeout": args.timeout,
        "ca_file": args.ca_cert,
        "cert_file": args.client_cert,
        "key_file": args.client_key,
        "headers": headers,
        "admin_key": admin_key,
    }


def _client(args: argparse.Namespace, **overrides: Any) -> Client:
    # One-shot commands need no background health checks.
    return Client(args.url, **{**_connection(args), "health_interval": 0, **overrides})


def cmd_embed(args: argparse.Namespace) -> int:
    texts = list(args.texts) or [line.rstrip("\n") for line in sys.stdin if line.strip()]
    if not texts:
        print("embed: give texts as arguments or one per line on stdin", file=sys.stderr)
        return 2
    with _client(args) as client:
        vectors = client.embed(texts, model=args.model)
    if args.json:
        _print_json({"model": args.model, "shape": list(vectors.shape), "embeddings": vectors.tolist()})
        return 0
    print(f"{vectors.shape[0]} embedding(s) of dim {vectors.shape[1]} from {args.model}")
    with np.printoptions(precision=4, suppress=True, threshold=8, edgeitems=3):
        for text, vector in zip(texts, vectors, strict=True):
            label = text if len(text) <= 40 else text[:37] + "..."
            print(f"  {label!r}: norm={np.linalg.norm(vector):.4f} {vector}")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    sampling = _sampling(args)
    with _client(args) as client:
        if args.json or args.no_stream or args.logprobs is not None:
            result = client.generate(args.prompt, model=args.model, **sampling)
            if args.json:
                _print_json({**result.as_dict(), "endpoint": result.endpoint})
            else:
                print(result.text)
                _print_logprobs(result)
                print(_token_line(result.num_input_tokens, result.num_output_tokens), file=sys.stderr)
            return 0
        pieces = 0
        for piece in client.stream(args.prompt, model=args.model, **sampling):
            pieces += 1
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
        print(f"[{pieces} piece(s) streamed]", file=sys.stderr)
    return 0


def _print_logprobs(result: GenerationResult) -> None:
    """One line per generated token: its log-probability and rank, then the most likely ones."""
    if result.logprobs is None:
        return
    for entry in result.logprobs:
        token = entry.token
        top = ", ".join(f"{c.text!r} {c.logprob:.3f}" for c in entry.listed if c.token_id != token.token_id)
        print(f"  {token.text!r:>20} {token.logprob:9.4f}  rank {token.rank:<6} {top}")
    print(f"cumulative logprob: {result.cumulative_logprob:.4f}")


def _token_line(n_in: int | None, n_out: int | None) -> str:
    prompt = "?" if n_in is None else n_in
    generated = "?" if n_out is None else n_out
    return f"[prompt tokens: {prompt}, generated: {generated}]"


def cmd_health(args: argparse.Namespace) -> int:
    with _client(args, models=args.model or ()) as client:
        report = client.health()
    if args.json:
        _print_json(report)
    else:
        for entry in report:
            state = "READY" if entry["ready"] else f"NOT READY ({entry['reason']})"
            print(f"{entry['endpoint']:<32} {state}")
    return 0 if all(e["ready"] for e in report) else 1


def cmd_models(args: argparse.Namespace) -> int:
    with _client(args) as client:
        models = client.models()
    if args.json:
        _print_json(models)
        return 0
    print(f"{'MODEL':<28} {'VERSION':<8} STATE")
    for model in models:
        reason = f"  {model['reason']}" if model.get("reason") else ""
        print(f"{model.get('name', ''):<28} {model.get('version', '-'):<8} {model.get('state', '-')}{reason}")
    return 0


def _stats_line(stats: dict[str, Any]) -> str:
    inference = stats.get("inference_stats", {})

    def avg_ms(key: str) -> str:
        part = inference.get(key, {})
        count = int(part.get("count", 0) or 0)
        return f"{int(part.get('ns', 0) or 0) / count / 1e6:.2f}" if count else "-"

    return (
        f"inferences={stats.get('inference_count', 0)} executions={stats.get('execution_count', 0)} "
        f"avg queue={avg_ms('queue')}ms compute={avg_ms('compute_infer')}ms "
        f"failures={inference.get('fail', {}).get('count', 0)}"
    )


def cmd_stats(args: argparse.Namespace) -> int:
    with _client(args) as client:
        per_endpoint = client.stats(args.model)
    if args.json:
        _print_json(per_endpoint)
        return 0
    for endpoint, answer in per_endpoint.items():
        for stats in answer.get("model_stats", []):
            print(f"{endpoint} {stats.get('name')} v{stats.get('version')}: {_stats_line(stats)}")
    return 0


def cmd_batch(args: argparse.Namespace) -> int:
    output = Path(args.output)
    if output.exists() and not partial_dir(output).exists() and not args.overwrite:
        print(
            f"{output} is complete (no {partial_dir(output).name}); use --overwrite to run again",
            file=sys.stderr,
        )
        return 0
    model = args.model or (DEFAULT_EMBED_MODEL if args.task == "embed" else DEFAULT_GENERATE_MODEL)

    async def main() -> Any:
        async with AsyncClient(args.url, **_connection(args), max_concurrency=args.concurrency) as client:
            return await run_batch(
                client,
                args.task,
                Path(args.input),
                output,
                model=model,
                field=args.field,
                concurrency=args.concurrency,
                chunk_size=args.chunk_size,
                sampling=_sampling(args) if args.task == "generate" else None,
                retry_failed=args.retry_failed,
                progress=not args.no_progress and not args.json,
            )

    try:
        summary = asyncio.run(main())
    except JournalMismatchError as exc:
        print(f"batch: {exc}", file=sys.stderr)
        return 2
    if args.json:
        _print_json(summary.as_dict())
    else:
        print(
            f"{summary.succeeded}/{summary.total} rows done "
            f"({summary.resumed} from an earlier run) → {output}"
        )
        if summary.errors:
            print(f"{summary.failed} failed row(s) with their error → {summary.errors}")
    return 3 if summary.failed else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ds-triton-client",
        description="Call DeepSpeed models served by Triton: embed, generate, health, models, stats, batch; "
        "run queued jobs (worker, submit, collect).",
    )
    parser.add_argument(
        "--url",
        default=os.environ.get("DS_TRITON_URL", DEFAULT_URL),
        help="endpoint(s), comma-separated: http(s)://host:port or grpc(s)://host:port (env DS_TRITON_URL)",
    )
    parser.add_argument("--protocol", choices=["http", "grpc"], help="for URLs without a scheme")
    parser.add_argument("--timeout", type=float, default=60.0, help="per-call deadline in seconds")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    tls = parser.add_argument_group("TLS and authentication (https:// and grpcs:// URLs)")
    tls.add_argument(
        "--ca-cert",
        default=os.environ.get("DS_TRITON_CA_CERT"),
        help="PEM CA bundle that verifies the server (default: the system's; env DS_TRITON_CA_CERT)",
    )
    tls.add_argument("--client-cert", help="PEM client certificate, for mutual TLS (with --client-key)")
    tls.add_argument("--client-key", help="PEM private key of --client-cert")
    tls.add_argument(
        "--header",
        action="append",
        metavar="'NAME: VALUE'",
        help="extra header on every request (repeatable)",
    )
    tls.add_argument(
        "--admin-key-file",
        help=f"file holding the server's admin key, for its restricted APIs (or set {ADMIN_KEY_ENV})",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    embed = commands.add_parser("embed", help="embed texts (arguments or stdin lines)")
    embed.add_argument("texts", nargs="*")
    embed.add_argument("--model", default=DEFAULT_EMBED_MODEL)
    embed.set_defaults(handler=cmd_embed)

    generate = commands.add_parser("generate", help="generate from a prompt, streamed to the terminal")
    generate.add_argument("prompt")
    generate.add_argument("--model", default=DEFAULT_GENERATE_MODEL)
    generate.add_argument("--no-stream", action="store_true", help="print the whole answer at the end")
    _add_sampling(generate)
    generate.set_defaults(handler=cmd_generate)

    health = commands.add_parser("health", help="readiness of every endpoint (and --model)")
    health.add_argument("--model", action="append", help="also check this model (repeatable)")
    health.set_defaults(handler=cmd_health)

    models = commands.add_parser("models", help="the model repository index")
    models.set_defaults(handler=cmd_models)

    stats = commands.add_parser("stats", help="inference statistics of a model per endpoint")
    stats.add_argument("model")
    stats.set_defaults(handler=cmd_stats)

    batch = commands.add_parser("batch", help="run a JSONL/CSV file through a model; resumable")
    batch.add_argument("task", choices=["embed", "generate"])
    batch.add_argument("input", help=".jsonl/.ndjson/.csv of texts or prompts")
    batch.add_argument("output", help="embed: .npy or .parquet; generate: .jsonl")
    batch.add_argument("--model")
    batch.add_argument("--field", help="JSON field / CSV column (default: text, else prompt)")
    batch.add_argument("--concurrency", type=int, default=4)
    batch.add_argument("--chunk-size", type=int, help="rows per embedding request (default: max_batch_size)")
    batch.add_argument("--retry-failed", action="store_true", help="on resume, run failed rows again")
    batch.add_argument("--overwrite", action="store_true", help="run again even if output is complete")
    batch.add_argument("--no-progress", action="store_true")
    _add_sampling(batch)
    batch.set_defaults(handler=cmd_batch)

    add_queue_commands(commands, _connection, _sampling, _add_sampling)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``ds-triton-client``; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except ClientError as exc:
        if args.json:
            _print_json({"error": exc.message, "type": type(exc).__name__, "endpoint": exc.endpoint})
        else:
            print(f"error ({type(exc).__name__}): {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted; rerun the same command to resume a batch", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
