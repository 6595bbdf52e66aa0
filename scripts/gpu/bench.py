"""The GPU table: MiniLM and the tiny Llama, each loaded five ways, with their error vs HF fp32.

    python scripts/gpu/bench.py --device cuda:0 --out RUN/gpu_table.md
    python scripts/gpu/bench.py --dry-run --out RUN/gpu_table.md   # on CPU, CUDA-only rows reported

Rows per model: HF fp32 (the reference); HF fp16; DeepSpeed fp16 without
kernel injection; DeepSpeed fp16 with injection; the last DeepSpeed row served
through a real tritonserver (``KIND_GPU`` instance), measured by perf_analyzer
at concurrency 32 (4 on the dry run; throughput, p99). Embedding rows give the max-abs
difference of the vectors; generation rows the greedy-token agreement (the
served row: prompts whose text equals the in-process DeepSpeed row's).

A row that cannot run says why in its note; a row that should run and fails
makes the script exit 1 after printing the table (the check fails loudly).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from scripts.gpu import precision  # noqa: E402


@dataclass(frozen=True)
class Load:
    """perf_analyzer's load: concurrency and measurement window."""

    concurrency: int
    window_ms: int


GPU_LOAD = Load(concurrency=32, window_ms=4000)
# The dry run proves the path (server, perf_analyzer, parsing), not the speed: a light load.
DRY_RUN_LOAD = Load(concurrency=4, window_ms=1000)


@dataclass
class Row:
    model: str
    variant: str
    error: str = ""  # max-abs diff or greedy agreement
    latency: str = ""  # in-process: median ms per batch / per prompt set
    throughput: str = ""
    p99: str = ""
    note: str = ""
    failed: bool = False


def ds_dtype(device: str) -> str:
    """The half-precision dtype of the DeepSpeed rows: fp16 on CUDA, bf16 on the CPU dry run
    (DeepSpeed's CPU accelerator takes fp32 and bf16 only)."""
    return "fp16" if device.startswith("cuda") else "bf16"


def cpu_dtype_note(device: str) -> str:
    return "" if device.startswith("cuda") else " (dry run: bf16, DeepSpeed's CPU accelerator has no fp16)"


def timed(run: Callable[[], Any], repeats: int) -> tuple[Any, float]:
    """``run()``'s result and its median wall time in ms (after one warm-up call)."""
    import torch

    result = run()
    times = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        started = time.perf_counter()
        result = run()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append((time.perf_counter() - started) * 1e3)
    return result, statistics.median(times)


def guarded(rows: list[Row], model: str, variant: str, body: Callable[[Row], None]) -> None:
    row = Row(model, variant)
    try:
        body(row)
    except Exception as exc:  # a broken row fails the check, after the whole table is printed
        row.failed = True
        row.note = f"FAILED: {type(exc).__name__}: {' '.join(str(exc).split())[:600]}"
    rows.append(row)


def embedding_rows(device: str, cuda: bool, repeats: int) -> tuple[list[Row], Any]:
    rows: list[Row] = []
    model = "MiniLM-L6 (embedding, 32 texts)"
    reference = precision.embed(precision.hf_embedding_model(device, "fp32"))

    def hf(dtype: str) -> Callable[[Row], None]:
        def body(row: Row) -> None:
            loaded = precision.hf_embedding_model(device, dtype)
            vectors, ms = timed(lambda: precision.embed(loaded), repeats)
            row.error, row.latency = f"{precision.max_abs_diff(vectors, reference):.2e}", f"{ms:.1f}"
        return body

    def deepspeed(inject: str) -> Callable[[Row], None]:
        def body(row: Row) -> None:
            if inject == "on" and not cuda:
                row.note = "CUDA-only: DeepSpeed's injected kernels need a GPU (not run in the dry run)"
                return
            loaded = precision.ds_embedding_model(device, ds_dtype(device), inject)
            vectors, ms = timed(lambda: precision.embed(loaded), repeats)
            row.error, row.latency = f"{precision.max_abs_diff(vectors, reference):.2e}", f"{ms:.1f}"
            row.note = f"{precision.injected_layers(loaded)} DeepSpeed layers" if inject == "on" else ""
            row.note += cpu_dtype_note(device)
        return body

    guarded(rows, model, "HF fp32", hf("fp32"))
    guarded(rows, model, "HF fp16", hf("fp16"))
    guarded(rows, model, "DeepSpeed fp16, no injection", deepspeed("off"))
    guarded(rows, model, "DeepSpeed fp16, kernel injection", deepspeed("on"))
    return rows, reference


def generation_rows(device: str, repeats: int) -> tuple[list[Row], list[str]]:
    rows: list[Row] = []
    model = f"tiny Llama (generation, {len(precision.GEN_PROMPTS)} prompts x {precision.GEN_TOKENS} tokens)"
    module, tokenizer = precision.hf_generation_model(device, "fp32")
    reference = precision.hf_greedy_tokens(module, tokenizer)
    texts: list[str] = []

    def hf(dtype: str) -> Callable[[Row], None]:
        def body(row: Row) -> None:
            loaded, tok = precision.hf_generation_model(device, dtype)
            tokens, ms = timed(lambda: precision.hf_greedy_tokens(loaded, tok), repeats)
            row.error, row.latency = f"{precision.agreement(reference, tokens):.1%}", f"{ms:.1f}"
        return body

    def deepspeed(row: Row) -> None:
        loaded = precision.ds_generation_model(device, ds_dtype(device))
        tokens, ms = timed(lambda: precision.served_runner_greedy_tokens(loaded), repeats)
        row.error, row.latency = f"{precision.agreement(reference, tokens):.1%}", f"{ms:.1f}"
        row.note = "in-flight batching runner, all prompts in one batch" + cpu_dtype_note(device)
        texts.extend(
            precision.continuation_text(loaded.tokenizer, p, t)
            for p, t in zip(precision.GEN_PROMPTS, tokens, strict=True)
        )

    def injected(row: Row) -> None:
        row.note = (
            "not run: generation never injects (DeepSpeed's injected attention keeps its own KV "
            "cache, which in-flight batching cannot share; kernel_inject 'on' is refused)"
        )

    guarded(rows, model, "HF fp32", hf("fp32"))
    guarded(rows, model, "HF fp16", hf("fp16"))
    guarded(rows, model, "DeepSpeed fp16, no injection", deepspeed)
    guarded(rows, model, "DeepSpeed fp16, kernel injection", injected)
    return rows, texts


def served_rows(
    device: str, cuda: bool, reference: Any, texts: list[str], work: Path, load: Load
) -> list[Row]:
    """Both models in one tritonserver: outputs vs the references, perf_analyzer at ``load``."""
    from ds_triton.repository.machine import Machine
    from ds_triton.repository.scaffold import add_model
    from ds_triton.server_process.tritonserver import Ports, ServerOptions, running_server
    from ds_triton_client import Client

    rows: list[Row] = []
    repository = work / "repository"
    machine = Machine.detect()
    embed_spec = served_spec(
        precision.spec_for(
            precision.EMBEDDING_DIR, dtype=ds_dtype(device), kernel_inject="auto", device=device
        ),
        "gpu_embedding", precision.EMBEDDING_DIR,
    )
    gen_spec = served_spec(
        precision.generation_spec(device, ds_dtype(device)), "gpu_generation", precision.GENERATION_DIR
    )
    for spec in (embed_spec, gen_spec):
        add_model(repository, spec, machine, replace=True)
    kind = "KIND_GPU" if cuda else "KIND_CPU (dry run)"
    # No repository polling: the stub writes model.py's bytecode into the model folder, and a
    # poller would reload both models under the load that follows (perf_analyzer then fails
    # with "failed to find the requested model version", or hangs on its streams).
    options = ServerOptions(
        model_repository=repository, ports=Ports.free(), run_dir=work / "run", model_control="none"
    )
    models = ["gpu_embedding", "gpu_generation"]
    with running_server(options, log_path=work / "server.log", models=models) as server:
        url = f"http://{server.http_url.removeprefix('http://')}"

        def embedding(row: Row) -> None:
            with Client(url) as client:
                vectors = client.embed(precision.EMBED_TEXTS, model="gpu_embedding")
            row.error = f"{precision.max_abs_diff(vectors, reference):.2e}"
            row.throughput, row.p99, retried = perf(
                server.grpc_url, "gpu_embedding", embedding_input(), work, load, streaming=False
            )
            row.note = f"{kind}, dtype {ds_dtype(device)}, kernel_inject auto" + retry_note(retried)

        def generation(row: Row) -> None:
            with Client(url) as client:
                served = [
                    client.generate(p, model="gpu_generation", temperature=0, max_tokens=precision.GEN_TOKENS,
                                    ignore_eos=True).text
                    for p in precision.GEN_PROMPTS
                ]
            same = sum(a == b for a, b in zip(served, texts, strict=True))
            row.error = f"{same}/{len(texts)} texts = in-process"
            row.throughput, row.p99, retried = perf(
                server.grpc_url, "gpu_generation", generation_input(), work, load, streaming=True
            )
            row.note = (f"{kind}, dtype {ds_dtype(device)}, streaming, max_tokens {precision.GEN_TOKENS}"
                        + retry_note(retried))

        guarded(rows, "MiniLM-L6 (embedding, 32 texts)", "Triton: DeepSpeed fp16", embedding)
        guarded(rows, "tiny Llama (generation)", "Triton: DeepSpeed fp16", generation)
    return rows


def served_spec(spec: Any, name: str, version_dir: Path) -> Any:
    """``spec`` as one instance of its own, with no queue policy (one instance stalls under one)."""
    import dataclasses

    return dataclasses.replace(
        spec,
        name=name,
        checkpoint=str(spec.resolve_checkpoint(version_dir)),  # add_model copies it in
        deployment=dataclasses.replace(spec.deployment, instances_per_device=1, threads_per_instance=1),
        batching=dataclasses.replace(
            spec.batching, latency_budget_ms=None, max_queue_size=None, queue_timeout_us=None
        ),
    )


def embedding_input() -> dict[str, Any]:
    return {"data": [{"text": {"content": [t], "shape": [1]}} for t in precision.EMBED_TEXTS[:8]]}


def generation_input() -> dict[str, Any]:
    sampling = json.dumps({"temperature": 0, "max_tokens": precision.GEN_TOKENS, "ignore_eos": True})
    return {
        "data": [
            {
                "text_input": {"content": [p], "shape": [1]},
                "stream": {"content": [True], "shape": [1]},
                "sampling_parameters": {"content": [sampling], "shape": [1]},
            }
            for p in precision.GEN_PROMPTS
        ]
    }


def perf(
    grpc_url: str, model: str, data: dict[str, Any], work: Path, load: Load, *, streaming: bool
) -> tuple[str, str, str]:
    """perf_analyzer at ``load``: (requests/s, p99 ms, what went wrong on a first try that failed).

    A run that fails is tried once more, with a window twice as long, so one bad run does not cost
    the row its figures; the first run's error stays in the row's note.
    """
    from ds_triton.server_process.tritonserver import server_env

    data_file = work / f"{model}.input.json"
    data_file.write_text(json.dumps(data))
    first_error = ""
    for window_ms in (load.window_ms, 2 * load.window_ms):
        command = [
            "perf_analyzer", "-m", model, "-i", "grpc", "-u", grpc_url.removeprefix("grpc://"),
            "--input-data", str(data_file), "--concurrency-range", str(load.concurrency),
            "--measurement-interval", str(window_ms), "--stability-percentage", "999", "--max-trials", "3",
        ]
        if streaming:
            command.append("--streaming")
        result = subprocess.run(
            command, env=server_env(), capture_output=True, text=True, timeout=240, check=False
        )
        output = result.stdout + result.stderr
        throughput = re.search(r"Throughput: ([\d.]+) infer/sec", output)
        p99 = re.search(r"p99 latency: (\d+) usec", output)
        if result.returncode == 0 and throughput is not None and p99 is not None:
            return f"{float(throughput.group(1)):.1f}", f"{int(p99.group(1)) / 1e3:.1f}", first_error
        error = f"perf_analyzer failed (exit {result.returncode}, {window_ms} ms windows): "
        error += perf_error(result)
        print(error, file=sys.stderr)
        if first_error:
            raise RuntimeError(f"{first_error}; again: {error}")
        first_error = error
    raise AssertionError("unreachable")


def retry_note(first_error: str) -> str:
    return f" (second try; the first: {first_error[:300]})" if first_error else ""


def perf_error(result: subprocess.CompletedProcess[str]) -> str:
    """The lines of perf_analyzer's output that say what went wrong, on one line (a table cell)."""
    lines = [line.strip() for line in (result.stderr + "\n" + result.stdout).splitlines() if line.strip()]
    telling = [
        line for line in lines if re.search(r"error|fail|invalid|unable|no valid|thread \[", line, re.I)
    ]
    return " / ".join(telling or lines[-3:])[:600] or "no output"


def table(rows: list[Row], header: str, load: Load) -> str:
    lines = [
        header,
        "",
        "| model | variant | max-abs diff / greedy agreement vs HF fp32 | in-process ms | "
        f"Triton req/s (c={load.concurrency}) | Triton p99 ms | note |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.model} | {r.variant} | {r.error or '-'} | {r.latency or '-'} | {r.throughput or '-'} | "
            f"{r.p99 or '-'} | {r.note} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda:0")
    parser.add_argument(
        "--dry-run", action="store_true", help="run on CPU; CUDA-only rows are reported, not run"
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    import torch

    device = "cpu" if args.dry_run else args.device
    cuda = device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        print("FAIL: torch sees no CUDA device; the GPU table cannot be made", file=sys.stderr)
        return 1
    repeats = 1 if args.dry_run else args.repeats
    load = DRY_RUN_LOAD if args.dry_run else GPU_LOAD
    machine = torch.cuda.get_device_name(device) if cuda else "CPU (dry run)"
    header = (
        f"GPU table: {machine}, torch {torch.__version__}, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )
    embed, reference = embedding_rows(device, cuda, repeats)
    generate, texts = generation_rows(device, repeats)
    with tempfile.TemporaryDirectory(prefix="gpu-bench-") as work:
        served = served_rows(device, cuda, reference, texts, Path(work), load)
    rows = [*embed, *generate, *served]
    text = table(rows, header, load)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    failed = [r for r in rows if r.failed]
    for r in failed:
        print(f"FAIL: {r.model} / {r.variant}: {r.note}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
