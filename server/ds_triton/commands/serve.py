"""``ds-triton serve``: run tritonserver on the model repository in the foreground."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from types import FrameType

from ds_triton.repository.machine import detect_gpu_ids
from ds_triton.repository.writer import resolve_gpus_for_serving
from ds_triton.server_process.tritonserver import Ports, ServerOptions, TritonServer


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("serve", help="run tritonserver on a model repository")
    parser.add_argument("--model-repository", type=Path, default=Path("model_repository"))
    parser.add_argument("--http-port", type=int, default=int(os.environ.get("HTTP_PORT", 8000)))
    parser.add_argument("--grpc-port", type=int, default=int(os.environ.get("GRPC_PORT", 8001)))
    parser.add_argument("--metrics-port", type=int, default=int(os.environ.get("METRICS_PORT", 8002)))
    parser.add_argument(
        "--model-control",
        choices=["poll", "explicit", "none"],
        default=os.environ.get("MODEL_CONTROL", "poll"),
        help="poll (default): models dropped into, changed in or removed from the "
        "repository are loaded, reloaded or unloaded within seconds",
    )
    parser.add_argument("--poll-seconds", type=int, default=2)
    parser.add_argument("--run-dir", type=Path, default=Path(".run"))
    parser.set_defaults(func=run)


def banner(ports: Ports, repository: Path, control: str) -> str:
    return f"""
Triton Inference Server on {repository.resolve()} (model control: {control})
  HTTP     http://localhost:{ports.http}
  gRPC     localhost:{ports.grpc}
  metrics  http://localhost:{ports.metrics}/metrics

Try it:
  curl -s localhost:{ports.http}/v2/models/text_embedding/infer \\
    -d '{{"inputs":[{{"name":"text","datatype":"BYTES","shape":[1,1],"data":["hello world"]}}]}}'
  curl -N localhost:{ports.http}/v2/models/text_generation/generate_stream \\
    -d '{{"text_input":"Hello","parameters":{{"stream":true,"temperature":0,"max_tokens":16}}}}'

Ctrl-C stops the server.
"""


def run(args: argparse.Namespace) -> int:
    # The same repository serves 1, 4 or 8 GPUs: models that say gpus "all" get one
    # instance group per GPU of this machine. Without GPUs nothing is rewritten.
    for name in resolve_gpus_for_serving(args.model_repository, detect_gpu_ids()):
        print(f"{name}: config.pbtxt re-rendered for this machine's GPUs", file=sys.stderr)
    ports = Ports(args.http_port, args.grpc_port, args.metrics_port)
    options = ServerOptions(
        model_repository=args.model_repository,
        ports=ports,
        run_dir=args.run_dir,
        model_control=args.model_control,
        poll_seconds=args.poll_seconds,
    )
    server = TritonServer(options).start()

    def stop(signum: int, _frame: FrameType | None) -> None:
        print(f"\nstopping tritonserver ({signal.Signals(signum).name})", file=sys.stderr)
        server.stop()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        server.wait_ready(timeout=600)
        print(banner(ports, args.model_repository, args.model_control), flush=True)
    except Exception as exc:  # still show why, then keep the server's own output visible
        print(f"tritonserver did not become ready: {exc}", file=sys.stderr)
    code = server.wait()
    server.stop()
    return 0 if code in (0, -signal.SIGTERM, -signal.SIGINT) else code
