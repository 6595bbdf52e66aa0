"""The OpenAI gateway's overhead: one load through ``ds-triton-gateway`` and straight over gRPC (issue 11).

A ``ds-triton-gateway`` process is started in front of the measured server
(its gRPC port), as ``make serve`` runs it. Then the same closed-loop load is
sent both ways, in alternating rounds (direct, gateway, gateway, direct, ...)
so that drift on a shared machine hits both paths alike:

* embedding models: ``batch_size`` texts per request at ``concurrency``;
  direct is ``ds_triton_client`` over gRPC, the gateway path is ``POST
  /v1/embeddings`` with ``encoding_format: base64`` (what the OpenAI SDKs ask
  for). Target: gateway items/s ≥ ``throughput_bar`` × direct.
* generation models: ``streams`` concurrent greedy streams of ``max_tokens``;
  direct is ``ds_triton_client`` streaming over gRPC, the gateway path is
  ``POST /v1/completions`` with ``stream: true`` (SSE). Target: the gateway's
  time-to-first-token p50 is at most ``ttft_added_ms_bar`` above direct's.

Both paths are driven by this process (the load generator), whose CPU use is
reported per path: on a small machine it competes with the server and the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ds_triton_perf.kinds import Kind, KindContext, Row, target
from ds_triton_perf.loadgen import LoadResult, LoadSpec, run_load
from ds_triton_perf.outcome import Outcome, RequestFn
from ds_triton_perf.report.document import Section, Table, anchor
from ds_triton_perf.results import BenchResults
from ds_triton_perf.scenarios import ModelScenarios

if TYPE_CHECKING:
    from ds_triton.server_process.gateway import GatewayProcess

PATHS = ("direct", "gateway")


@dataclass(frozen=True)
class GatewayScenario:
    """See the module docstring; ``quick_*`` apply with ``--quick``."""

    name: str = "gateway"
    texts: str = ""
    batch_size: int = 8
    concurrency: int = 4
    streams: int = 1
    max_tokens: int = 16
    duration_s: float = 8.0
    quick_duration_s: float = 3.0
    warmup_s: float = 1.0
    rounds: int = 2
    quick_rounds: int = 1
    throughput_bar: float = 0.9
    ttft_added_ms_bar: float = 2.0


def run(ctx: KindContext, scenarios: ModelScenarios, config: GatewayScenario) -> None:
    model = scenarios.model
    generation = scenarios.task == "generation"
    load = (f"{config.streams} stream(s) of {config.max_tokens} tokens" if generation
            else f"{config.batch_size} texts per request at concurrency {config.concurrency}")  # fmt: skip
    ctx.log.step(f"{model}: {config.name}: gateway vs direct gRPC, {load}")
    with gateway_process(ctx) as base_url:
        measured = asyncio.run(_measure(ctx, scenarios, config, base_url))
    row = summarise(measured, generation)
    row.update(scenario=config.name, task=scenarios.task, load=load,
               throughput_bar=config.throughput_bar, ttft_added_ms_bar=config.ttft_added_ms_bar)  # fmt: skip
    ctx.add_row(KIND.key, model, row)
    if generation:
        ctx.log.detail(f"TTFT p50 {row['direct_ttft_p50_ms']} ms direct, {row['gateway_ttft_p50_ms']} ms "
                       f"through the gateway (+{row['ttft_added_ms']} ms)")  # fmt: skip
    else:
        ctx.log.detail(f"{row['direct_items_per_s']} items/s direct, {row['gateway_items_per_s']} through "
                       f"the gateway ({row['throughput_ratio']}×)")  # fmt: skip


@contextlib.contextmanager
def gateway_process(ctx: KindContext) -> Iterator[str]:
    """``ds-triton-gateway`` in front of the measured server's gRPC port, as serve runs it; its base URL."""
    from ds_triton.server_process.gateway import GatewayLaunch, GatewayProcess
    from ds_triton.server_process.tritonserver import free_ports

    (port,) = free_ports(1)
    # No in-flight limit in the way of the load: the bench measures overhead, not shedding.
    launch = GatewayLaunch("127.0.0.1", port, f"grpc://{ctx.server.grpc}", ctx.model_repository,
                           extra_args=("--max-in-flight", "4096"))  # fmt: skip
    process = GatewayProcess(launch).start(log=ctx.out_dir / f"gateway-{port}.log")
    base_url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(base_url, process)
        yield base_url
    finally:
        process.terminate()
        process.wait(timeout=30)


def _wait_healthy(base_url: str, process: GatewayProcess, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"ds-triton-gateway exited with code {process.poll()}")
        with contextlib.suppress(OSError), urllib.request.urlopen(base_url + "/health", timeout=2):
            return
        time.sleep(0.2)
    raise RuntimeError(f"ds-triton-gateway did not answer within {timeout:.0f}s")


async def _measure(ctx: KindContext, scenarios: ModelScenarios, config: GatewayScenario,
                   base_url: str) -> dict[str, list[LoadResult]]:  # fmt: skip
    generation = scenarios.task == "generation"
    spec = LoadSpec(mode="closed", concurrency=config.streams if generation else config.concurrency,
                    duration_s=config.quick_duration_s if ctx.quick else config.duration_s,
                    warmup_s=config.warmup_s)  # fmt: skip
    rounds = config.quick_rounds if ctx.quick else config.rounds
    measured: dict[str, list[LoadResult]] = {path: [] for path in PATHS}
    async with _targets(ctx, scenarios, config, base_url) as targets:
        for index in range(rounds):
            order = PATHS if index % 2 == 0 else PATHS[::-1]
            for path in order:
                label = f"{scenarios.model} {config.name} {path} (round {index + 1}/{rounds})"
                measured[path].append(await run_load(targets[path], spec, label=label, progress=ctx.progress))
    return measured


@contextlib.asynccontextmanager
async def _targets(ctx: KindContext, scenarios: ModelScenarios, config: GatewayScenario,
                   base_url: str) -> AsyncIterator[dict[str, RequestFn]]:  # fmt: skip
    import aiohttp

    model = scenarios.model
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(base_url, connector=connector) as session:
        if scenarios.task == "generation":
            from ds_triton_perf.targets.generation import open_generation_target

            prompts = [p for p, _ in scenarios.generation_requests(ctx.quick)]
            requests = [(p, config.max_tokens) for p in prompts]
            async with open_generation_target(ctx.server.grpc, model, requests, "grpc") as direct:
                yield {"direct": direct, "gateway": _gateway_stream(session, model, requests)}
        else:
            from ds_triton_perf.targets import Endpoint, batches, open_embedding_target
            from ds_triton_perf.texts import text_mix

            texts = text_mix(scenarios.text_weights(config.texts or "uniform"), count=256, seed=5)
            endpoint = Endpoint("triton", "triton", ctx.server.grpc, model, "grpc")
            async with open_embedding_target(endpoint, texts, config.batch_size) as direct:
                yield {
                    "direct": direct,
                    "gateway": _gateway_embed(session, model, batches(texts, config.batch_size)),
                }


def _gateway_embed(session: Any, model: str, groups: Iterator[list[str]]) -> RequestFn:
    async def request() -> Outcome:
        texts = next(groups)
        body = {"model": model, "input": texts, "encoding_format": "base64"}
        async with session.post("/v1/embeddings", json=body) as response:
            answer = await response.read()
        if response.status != 200:
            return Outcome(items=0, error=f"HTTP {response.status}")
        if len(json.loads(answer)["data"]) != len(texts):
            return Outcome(items=0, error="wrong row count")
        return Outcome(items=len(texts))

    return request


def _gateway_stream(session: Any, model: str, requests: Sequence[tuple[str, int]]) -> RequestFn:
    import itertools

    cycle = itertools.cycle(requests)

    async def request() -> Outcome:
        prompt, max_tokens = next(cycle)
        body = {"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "stream": True,
                "ignore_eos": True}  # fmt: skip
        times: list[float] = []
        async with session.post("/v1/completions", json=body) as response:
            if response.status != 200:
                return Outcome(items=0, error=f"HTTP {response.status}")
            async for line in response.content:
                if line.startswith(b"data: {") and b'"text":""' not in line:
                    times.append(time.perf_counter())
        return Outcome(items=len(times), token_times=times)

    return request


def summarise(measured: dict[str, list[LoadResult]], generation: bool) -> Row:
    """Both paths' totals over their rounds, and the two targets' values."""
    row: Row = {}
    for path, results in measured.items():
        seconds = sum(r.duration_s for r in results) or 1e-9
        items = sum(r.items_per_s * r.duration_s for r in results)
        p50s = [r.ttft_ms.get("p50") for r in results if r.ttft_ms.get("p50") is not None]
        row.update({
            f"{path}_items_per_s": round(items / seconds, 2),
            f"{path}_rps": round(sum(r.throughput_rps * r.duration_s for r in results) / seconds, 2),
            f"{path}_latency_p50_ms": _median([r.latency_ms.get("p50") for r in results]),
            f"{path}_ttft_p50_ms": _median(p50s),
            f"{path}_errors": sum(r.error_count for r in results),
            f"{path}_loadgen_cpu_cores": _median([r.loadgen_cpu_cores for r in results]),
            f"{path}_rounds": len(results),
        })  # fmt: skip
    direct, gateway = row["direct_items_per_s"], row["gateway_items_per_s"]
    row["throughput_ratio"] = round(gateway / direct, 3) if direct else None
    if generation and row["direct_ttft_p50_ms"] is not None and row["gateway_ttft_p50_ms"] is not None:
        row["ttft_added_ms"] = round(row["gateway_ttft_p50_ms"] - row["direct_ttft_p50_ms"], 3)
    else:
        row["ttft_added_ms"] = None
    return row


def _median(values: Sequence[float | None]) -> float | None:
    present = sorted(v for v in values if v is not None)
    if not present:
        return None
    middle = len(present) // 2
    value = present[middle] if len(present) % 2 else (present[middle - 1] + present[middle]) / 2
    return round(value, 3)


def verdicts(results: BenchResults, rows: list[Row]) -> None:
    for row in rows:
        model = row["model"]
        if row["task"] == "generation":
            target(
                results,
                model,
                f"{model} streaming TTFT p50 added by the OpenAI gateway (vs direct gRPC)",
                row["ttft_added_ms_bar"],
                row["ttft_added_ms"],
                lower_is_better=True,
                unit="ms",
                detail=f"{row['gateway_ttft_p50_ms']} ms vs {row['direct_ttft_p50_ms']} ms; {row['load']}",
            )
        else:
            target(
                results,
                model,
                f"{model} embeddings throughput through the OpenAI gateway ÷ direct gRPC",
                row["throughput_bar"],
                row["throughput_ratio"],
                detail=f"{row['gateway_items_per_s']} vs {row['direct_items_per_s']} items/s; {row['load']}",
            )


def section(model: str, rows: list[Row], results: BenchResults) -> Section | None:
    if not rows:
        return None
    body = [[r["scenario"], path, r["load"], r[f"{path}_items_per_s"], r[f"{path}_rps"],
             r[f"{path}_latency_p50_ms"], r[f"{path}_ttft_p50_ms"], r[f"{path}_errors"],
             r[f"{path}_loadgen_cpu_cores"]] for r in rows for path in PATHS]  # fmt: skip
    table = Table(["scenario", "path", "load", "items/s", "requests/s", "latency p50 ms", "TTFT p50 ms",
                   "errors", "loadgen CPU cores"], body)  # fmt: skip
    return Section(
        anchor(model, "gateway-section"),
        "OpenAI gateway vs direct gRPC",
        "The same closed-loop load through ds-triton-gateway (OpenAI API over HTTP) and straight "
        "to Triton over gRPC with ds_triton_client, in alternating rounds of one run.",
        [table],
    )


KIND = Kind(
    key="gateway",
    title="OpenAI gateway overhead",
    config=GatewayScenario,
    run=run,
    verdicts=verdicts,
    section=section,
)
