"""``ds-triton serve``: run tritonserver on the model repository in the foreground, supervised.

See ``ds_triton.server_process.session`` for what happens at start, when a stub
dies, when tritonserver dies, and on SIGTERM / Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from types import FrameType

from ds_triton.repository.checks import spec_problems
from ds_triton.repository.machine import detect_gpu_ids
from ds_triton.repository.writer import resolve_gpus_for_serving
from ds_triton.server_process.gateway import GatewayLaunch
from ds_triton.server_process.security import SecurityError, add_security_arguments, security_options
from ds_triton.server_process.session import ServeConfig, ServeSession
from ds_triton.server_process.supervisor import RestartPolicy
from ds_triton.server_process.tritonserver import Ports, ServerOptions


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("serve", help="run tritonserver on a model repository, supervised")
    parser.add_argument("--model-repository", type=Path, default=Path("model_repository"))
    parser.add_argument(
        "--host",
        default=os.environ.get("HOST", "127.0.0.1"),
        help="address HTTP, gRPC and metrics listen on (default 127.0.0.1, this machine only; "
        "0.0.0.0 for every interface)",
    )
    parser.add_argument("--http-port", type=int, default=_env_int("HTTP_PORT", 8000))
    parser.add_argument("--grpc-port", type=int, default=_env_int("GRPC_PORT", 8001))
    parser.add_argument("--metrics-port", type=int, default=_env_int("METRICS_PORT", 8002))
    parser.add_argument(
        "--supervisor-metrics-port",
        type=int,
        default=_env_int("SUPERVISOR_METRICS_PORT", 8003),
        help="Prometheus endpoint of the stub supervisor's counters (0: off)",
    )
    parser.add_argument(
        "--model-control",
        choices=["poll", "explicit", "none"],
        default=os.environ.get("MODEL_CONTROL", "poll"),
        help="poll (default): models dropped into, changed in or removed from the repository are "
        "loaded, reloaded or unloaded within seconds; explicit/none: the models present at start "
        "(explicit also lets an admin load and unload through Triton's repository API)",
    )
    parser.add_argument("--poll-seconds", type=int, default=2)
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=float(os.environ.get("DRAIN_TIMEOUT", 30)),
        help="on SIGTERM/Ctrl-C, seconds to let accepted requests and streams finish (default 30)",
    )
    parser.add_argument("--max-crashes", type=int, default=5,
                        help="stub crashes within --crash-window after which a model stays down")
    parser.add_argument("--crash-window", type=float, default=600.0)
    parser.add_argument("--strict-readiness", action="store_true",
                        help="server readiness requires every model to be ready (for container probes)")
    parser.add_argument("--run-dir", type=Path, default=Path(".run"))
    parser.add_argument(
        "--gateway-port",
        type=int,
        default=_env_int("GATEWAY_PORT", 0),
        help="also run the OpenAI-compatible gateway (ds-triton-gateway) on this port, on --host "
        "(0: off; make serve uses 8080)",
    )
    add_security_arguments(parser)
    parser.set_defaults(func=run)


def banner(ports: Ports, repository: Path, control: str, host: str, tls: bool, gateway_port: int = 0) -> str:
    shown = "localhost" if host in ("127.0.0.1", "localhost") else host
    openai_line = f"\n  OpenAI   http://{shown}:{gateway_port}/v1 (ds-triton-gateway)" if gateway_port else ""
    openai_try = (
        f"""
  curl -s localhost:{gateway_port}/v1/chat/completions -H 'Content-Type: application/json' \\
    -d '{{"model":"text_generation","messages":[{{"role":"user","content":"Hello"}}],"max_tokens":16}}'"""
        if gateway_port
        else ""
    )
    return f"""
Triton Inference Server on {repository.resolve()} (model control: {control})
  HTTP     http://{shown}:{ports.http}
  gRPC     {"grpcs" if tls else "grpc"}://{shown}:{ports.grpc}
  metrics  http://{shown}:{ports.metrics}/metrics{openai_line}

Try it:
  curl -s localhost:{ports.http}/v2/models/text_embedding/infer \\
    -d '{{"inputs":[{{"name":"text","datatype":"BYTES","shape":[1,1],"data":["hello world"]}}]}}'
  curl -N localhost:{ports.http}/v2/models/text_generation/generate_stream \\
    -d '{{"text_input":"Hello","parameters":{{"stream":true,"temperature":0,"max_tokens":16}}}}'{openai_try}

Ctrl-C stops the server.
"""


def run(args: argparse.Namespace) -> int:
    try:
        security = security_options(args)
    except SecurityError as exc:
        print(f"ds-triton serve: {exc}", file=sys.stderr)
        return 2
    # The same repository serves 1, 4 or 8 GPUs: models that say gpus "all" get one
    # instance group per GPU of this machine. Without GPUs nothing is rewritten.
    for name in resolve_gpus_for_serving(args.model_repository, detect_gpu_ids()):
        print(f"{name}: config.pbtxt re-rendered for this machine's GPUs", file=sys.stderr)
    for problem in spec_problems(args.model_repository):  # the other models still serve
        print(f"{problem} (this model will not load)", file=sys.stderr)
    ports = Ports(args.http_port, args.grpc_port, args.metrics_port)
    options = ServerOptions(
        model_repository=args.model_repository,
        ports=ports,
        run_dir=args.run_dir,
        # Explicit control in tritonserver: the supervisor needs the repository API,
        # which Triton refuses in poll mode; the repository watcher does the polling.
        model_control="explicit",
        poll_seconds=args.poll_seconds,
        host=args.host,
        strict_readiness=args.strict_readiness,
        # The drain happens before SIGTERM (see session.py); tritonserver then only
        # has idle connections to wait for.
        exit_timeout_s=3,
        **security,
    )
    gateway = None
    if args.gateway_port:
        scheme = "grpcs" if options.grpc_tls is not None else "grpc"
        gateway = GatewayLaunch(
            host=args.host,
            port=args.gateway_port,
            grpc_url=f"{scheme}://{options.connect_host}:{ports.grpc}",
            model_repository=args.model_repository,
            admin_key=options.admin_key,
            drain_timeout_s=args.drain_timeout,
        )
    session = ServeSession(
        ServeConfig(
            options=options,
            watch_repository=args.model_control == "poll",
            drain_timeout_s=args.drain_timeout,
            restart_policy=RestartPolicy(max_crashes=args.max_crashes, window_s=args.crash_window),
            metrics_port=args.supervisor_metrics_port or None,
            gateway=gateway,
        )
    )

    def stop(signum: int, _frame: FrameType | None) -> None:
        print(f"\nds-triton: {signal.Signals(signum).name} received", file=sys.stderr, flush=True)
        session.request_stop()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    session.start()
    if session.wait_ready(timeout=600):
        tls = options.grpc_tls is not None
        print(banner(ports, args.model_repository, args.model_control, args.host, tls, args.gateway_port),
              flush=True)  # fmt: skip
    elif session.server.poll() is None and not session.stopping:
        print("tritonserver did not become ready within 600s; still serving what loaded", file=sys.stderr)
    return session.run()
