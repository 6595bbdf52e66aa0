"""``ds-triton add-model NAME --task ... --checkpoint PATH``: one command adds a model.

Writes ``<repository>/NAME/`` (config.pbtxt, 1/model.json, 1/model.py) after
checking everything ``ds-triton check`` would; a server in poll mode loads it
within seconds.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ds_triton.checkpoint_files import PACKAGE_PREFIX
from ds_triton.errors import SpecError
from ds_triton.repository.layout import VERSION
from ds_triton.repository.machine import Machine
from ds_triton.repository.scaffold import AddModelError, add_model
from ds_triton.spec import DTYPES, KERNEL_INJECT, POOLINGS, TASKS, ModelSpec

# Flags that belong to one task's section of model.json: dest -> (section, key).
BATCHING_FLAGS = {
    "max_batch_size": "max_batch_size",
    "preferred_batch_sizes": "preferred_batch_sizes",
    "max_queue_delay_us": "max_queue_delay_us",
    "latency_budget_ms": "latency_budget_ms",
    "queue_size": "max_queue_size",
    "queue_timeout_us": "queue_timeout_us",
    "allow_timeout_override": "allow_timeout_override",
}
EMBEDDING_FLAGS = {
    "pooling": "pooling",
    "max_length": "max_length",
    "normalize": "normalize",
    "truncate": "truncate",
    "length_bucketing": "length_bucketing",
}
GENERATION_FLAGS = {
    "max_concurrent_sequences": "max_concurrent_sequences",
    "max_queued_requests": "max_queued_requests",
    "max_prompt_tokens": "max_prompt_tokens",
    "max_tokens_limit": "max_tokens_limit",
    "default_max_tokens": "default_max_tokens",
    "max_batch_total_tokens": "max_batch_total_tokens",
    "max_prefill_tokens": "max_prefill_tokens",
}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "add-model",
        help="add a model folder to the repository from a local Hugging Face checkpoint",
        description="Write <repository>/NAME/ (config.pbtxt, 1/model.json, 1/model.py), checked "
        "before anything is written. Options left out take the spec's defaults.",
    )
    parser.add_argument("name", help="model name (= folder name); letters, digits, '_' and '-'")
    parser.add_argument("--task", choices=TASKS, required=True)
    parser.add_argument(
        "--checkpoint", required=True,
        help="local checkpoint folder, or package:<module>/<subpath> for weights in a Python package",
    )
    parser.add_argument("--repository", type=Path, default=Path("model_repository"))
    parser.add_argument("--force", action="store_true", help="replace an existing model (reloaded live)")

    where = parser.add_argument_group("deployment (default: --cpu)")
    device = where.add_mutually_exclusive_group()
    device.add_argument("--cpu", action="store_true", help="run instances on CPU (KIND_CPU)")
    device.add_argument(
        "--gpus", type=_gpus, metavar="all|0,1,...",
        help='"all" (this machine\'s GPUs, re-resolved when serving) or ids such as 0,1: one '
        "instance group per GPU",
    )
    where.add_argument(
        "--instances-per-gpu", "--instances", dest="instances", type=int, metavar="K",
        help="replicas per GPU (or CPU instances with --cpu)",
    )
    where.add_argument(
        "--threads-per-instance", type=int, metavar="N", help="CPU threads of each instance"
    )
    where.add_argument(
        "--tensor-parallel", type=int, metavar="N",
        help="generation only: shard one instance over N ranks with DeepSpeed AutoTP (one per GPU "
        "of --gpus, or N processes with --cpu)",
    )
    where.add_argument("--dtype", choices=DTYPES)
    where.add_argument("--kernel-inject", choices=KERNEL_INJECT, help="DeepSpeed kernel injection")

    batching = parser.add_argument_group("dynamic batching (embedding)")
    batching.add_argument("--max-batch-size", type=int)
    batching.add_argument("--preferred-batch-sizes", type=_int_list, help="e.g. 16,32,64 ('' for none)")
    batching.add_argument("--max-queue-delay-us", type=int)
    batching.add_argument(
        "--latency-budget-ms", type=int, metavar="MS",
        help="p99 time in the server (queue + forward) that accepted requests should meet; the "
        "queue policy (shedding under overload) is derived from it; needs >= 2 instances",
    )
    batching.add_argument(
        "--queue-size", type=int, help="max queued requests, instead of the derived size (0: unbounded)"
    )
    batching.add_argument(
        "--queue-timeout-us", type=int,
        help="reject requests queued longer, instead of the derived timeout (0: never)",
    )
    batching.add_argument(
        "--no-timeout-override", dest="allow_timeout_override", action="store_const", const=False,
        help="ignore the per-request 'timeout' parameter (by default a request may shorten its wait)",
    )

    embedding = parser.add_argument_group("embedding")
    embedding.add_argument("--pooling", choices=POOLINGS)
    embedding.add_argument("--max-length", type=int, help="token limit (default: the checkpoint's)")
    embedding.add_argument("--no-normalize", dest="normalize", action="store_const", const=False)
    embedding.add_argument(
        "--no-truncate", dest="truncate", action="store_const", const=False,
        help="reject over-long texts instead of truncating them",
    )
    embedding.add_argument(
        "--no-length-bucketing", dest="length_bucketing", action="store_const", const=False,
        help="keep request order: forwards padded to their longest text, cut only by the token budget",
    )

    generation = parser.add_argument_group("generation")
    generation.add_argument("--max-concurrent-sequences", type=int)
    generation.add_argument("--max-queued-requests", type=int)
    generation.add_argument("--max-prompt-tokens", type=int)
    generation.add_argument("--max-tokens-limit", type=int)
    generation.add_argument("--default-max-tokens", type=int)
    generation.add_argument("--max-batch-total-tokens", type=int)
    generation.add_argument("--max-prefill-tokens", type=int)
    parser.set_defaults(func=run)


def spec_from_args(args: argparse.Namespace) -> ModelSpec:
    """The spec the flags describe (validated); flags of the other task are errors."""
    given = {k: v for k, v in vars(args).items() if v is not None}
    other = GENERATION_FLAGS if args.task == "embedding" else {**BATCHING_FLAGS, **EMBEDDING_FLAGS}
    wrong = [f"--{k.replace('_', '-')}" for k in other if k in given]
    if wrong:
        why = "" if args.task == "embedding" else " (it is decoupled and batches in flight itself)"
        verb = "does" if len(wrong) == 1 else "do"
        article = "an" if args.task[0] in "aeiou" else "a"
        raise SpecError(f"{', '.join(wrong)} {verb} not apply to {article} {args.task} model{why}")
    deployment: dict[str, Any] = {"device": "gpu" if args.gpus is not None else "cpu"}
    if args.gpus is not None:
        deployment["gpus"] = args.gpus
    if args.instances is not None:
        deployment["instances_per_device"] = args.instances
    if args.threads_per_instance is not None:
        deployment["threads_per_instance"] = args.threads_per_instance
    if args.tensor_parallel is not None:
        deployment["tensor_parallel"] = args.tensor_parallel
    data: dict[str, Any] = {
        "name": args.name,
        "task": args.task,
        "checkpoint": checkpoint_reference(args.checkpoint, args.repository / args.name / VERSION),
        "deployment": deployment,
    }
    for key in ("dtype", "kernel_inject"):
        if key in given:
            data[key] = given[key]
    if args.task == "embedding":
        data["batching"] = {spec_key: given[k] for k, spec_key in BATCHING_FLAGS.items() if k in given}
        data["embedding"] = {spec_key: given[k] for k, spec_key in EMBEDDING_FLAGS.items() if k in given}
    else:
        data["generation"] = {
            spec_key: given[k] for k, spec_key in GENERATION_FLAGS.items() if k in given
        }
    return ModelSpec.from_dict(data)


def checkpoint_reference(checkpoint: str, version_dir: Path) -> str:
    """How model.json names the checkpoint: ``package:`` as given, a folder inside the model's
    version folder relative to it (it travels with the model), any other folder absolute."""
    if checkpoint.startswith(PACKAGE_PREFIX):
        return checkpoint
    path = Path(checkpoint).expanduser().resolve()
    try:
        return str(path.relative_to(version_dir.resolve()))
    except ValueError:
        return str(path)


def run(args: argparse.Namespace) -> int:
    try:
        spec = spec_from_args(args)
        machine = Machine.detect()
        added = add_model(args.repository, spec, machine, replace=args.force)
    except AddModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except SpecError as exc:
        print(f"error: model {args.name!r} not added: {exc}", file=sys.stderr)
        return 1
    action = "replaced" if added.replaced else "added"
    print(f"{action} model {spec.name!r} at {added.folder.root} ({_placement(spec, machine)})")
    if added.imported_from is not None:
        print(f"copied checkpoint {added.imported_from} into {added.folder.version_dir / 'checkpoint'} "
              "(the server reads nothing outside the repository)")
    for warning in added.warnings:
        print(f"warning: will not load on this machine: {warning}", file=sys.stderr)
    print("a server in poll mode (`make serve`) loads it within seconds; "
          f"`ds-triton check {args.repository}` lints the repository")
    return 0


def _placement(spec: ModelSpec, machine: Machine) -> str:
    deployment = spec.deployment
    if deployment.tensor_parallel > 1:
        where = "CPU processes" if deployment.device == "cpu" else "GPUs"
        return f"1 instance sharded over {deployment.tensor_parallel} {where} (tensor parallel)"
    if deployment.device == "cpu":
        return f"{deployment.instances_per_device} CPU instance(s)"
    gpus = deployment.gpus if deployment.gpus != "all" else machine.gpu_ids
    listed = ", ".join(map(str, gpus)) if gpus else 'all GPUs Triton finds ("all", none here)'
    return f"{deployment.instances_per_device} instance(s) per GPU on {listed}"


def _gpus(value: str) -> str | list[int]:
    if value.strip().lower() == "all":
        return "all"
    try:
        ids = [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'all' or GPU ids like 0,1, got {value!r}") from None
    if not ids:
        raise argparse.ArgumentTypeError("expected 'all' or at least one GPU id")
    return ids


def _int_list(value: str) -> list[int]:
    try:
        return [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers like 16,32,64, got {value!r}") from None
