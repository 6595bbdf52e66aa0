"""A long prompt arrives while streams are decoding: do the running streams stall? (issue 14)

``streams`` streams decode continuously (each asks for ``stream_max_tokens``
tokens, then the next request starts). After ``settle_s`` of undisturbed
decoding, a ``prompt_tokens``-token prompt arrives every ``every_s`` seconds,
``arrivals`` times. Each arrival opens a window from its send to its first
token (its prefill). The target compares the running streams' inter-token
gaps that overlap a window (p99) with their gaps outside every window (p50):
≤ 2× means the long prefill was chunked and interleaved with decode steps
instead of stalling everyone for one big forward.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ds_triton_perf.histogram import Histogram
from ds_triton_perf.kinds import Kind, KindContext, Row, target
from ds_triton_perf.report.document import Figure, Section, Table, anchor
from ds_triton_perf.results import BenchResults
from ds_triton_perf.scenarios import ModelScenarios
from ds_triton_perf.texts import random_words


@dataclass(frozen=True)
class LongPromptScenario:
    """See the module docstring; ``quick_arrivals`` applies with ``--quick``."""

    name: str = "long_prompt"
    streams: int = 8
    stream_max_tokens: int = 128
    prompt_tokens: int = 512
    prompt_max_tokens: int = 4
    arrivals: int = 8
    quick_arrivals: int = 2
    every_s: float = 1.0
    settle_s: float = 1.5
    protocol: Literal["http", "grpc"] = "grpc"
    itl_ratio_bar: float = 2.0


@dataclass
class _Trace:
    streams: list[list[float]] = field(default_factory=list)  # token times of each streamed request
    windows: list[tuple[float, float]] = field(default_factory=list)  # long prompt: send, first token
    errors: list[str] = field(default_factory=list)


def run(ctx: KindContext, scenarios: ModelScenarios, config: LongPromptScenario) -> None:
    model = scenarios.model
    prompt, tokens = long_prompt(ctx.model_repository / model, config.prompt_tokens, config.prompt_max_tokens)
    arrivals = config.quick_arrivals if ctx.quick else config.arrivals
    ctx.log.step(f"{model}: {config.name}: {tokens}-token prompt x{arrivals} among {config.streams} streams")
    short = [p for p, _ in scenarios.generation_requests(quick=True)]
    trace = asyncio.run(_drive(ctx, model, config, short, prompt, arrivals))
    row = analyse(trace, config)
    to_unix = time.time() - time.perf_counter()
    row.update(scenario=config.name, streams=config.streams, prompt_tokens=tokens,
               arrivals_unix=[round(start + to_unix, 4) for start, _ in trace.windows],
               errors=sorted(set(trace.errors)), itl_ratio_bar=config.itl_ratio_bar)
    ctx.add_row(KIND.key, model, row)
    ctx.log.detail(f"ITL p50 {row['itl_p50_ms']} ms outside, p99 {row['itl_p99_during_ms']} ms during "
                   f"({row['gaps_during']} gaps); long-prompt TTFT p50 {row['long_ttft_p50_ms']} ms")


def long_prompt(model_dir: Path, wanted: int, max_tokens: int) -> tuple[str, int]:
    """A prompt of exactly ``wanted`` tokens for the model's tokenizer, within its limits."""
    from transformers import AutoTokenizer

    from ds_triton.spec import ModelSpec

    version = model_dir / "1"
    spec = ModelSpec.load(version)
    checkpoint = spec.resolve_checkpoint(version)
    limit = wanted
    if spec.generation is not None:
        limit = min(limit, spec.generation.max_prompt_tokens)
    config = json.loads((Path(checkpoint) / "config.json").read_text())
    context = config.get("max_position_embeddings") or config.get("n_positions")
    if context:
        limit = min(limit, int(context) - max_tokens)
    tokenizer = AutoTokenizer.from_pretrained(str(checkpoint))
    words = random_words(2 * limit, seed=7)
    low, high = 1, len(words)
    while low < high:  # the most words whose tokenisation fits the limit
        middle = (low + high + 1) // 2
        if len(tokenizer(" ".join(words[:middle]))["input_ids"]) <= limit:
            low = middle
        else:
            high = middle - 1
    text = " ".join(words[:low])
    return text, len(tokenizer(text)["input_ids"])


async def _drive(ctx: KindContext, model: str, config: LongPromptScenario, short: list[str], prompt: str,
                 arrivals: int) -> _Trace:
    from ds_triton_perf.targets.client import measuring_client

    url = ctx.server.grpc if config.protocol == "grpc" else ctx.server.http
    trace = _Trace()
    stop = asyncio.Event()
    prompts = itertools.cycle(short)
    async with measuring_client(url, config.protocol) as client:
        await client.model_info(model)

        async def stream(text: str, max_tokens: int) -> list[float]:
            times: list[float] = []
            async for _ in client.stream(text, model=model, temperature=0, max_tokens=max_tokens,
                                         ignore_eos=True):
                times.append(time.perf_counter())
            return times

        async def background() -> None:
            while not stop.is_set():
                try:
                    trace.streams.append(await stream(next(prompts), config.stream_max_tokens))
                except Exception as exc:  # recorded, and the stream goes on: one failure is data
                    trace.errors.append(type(exc).__name__)

        workers = [asyncio.create_task(background()) for _ in range(config.streams)]
        try:
            await asyncio.sleep(config.settle_s)
            for _ in range(arrivals):
                sent = time.perf_counter()
                try:
                    times = await stream(prompt, config.prompt_max_tokens)
                    if times:
                        trace.windows.append((sent, times[0]))
                except Exception as exc:
                    trace.errors.append(f"long prompt: {type(exc).__name__}")
                await asyncio.sleep(max(0.0, sent + config.every_s - time.perf_counter()))
        finally:
            stop.set()
            await asyncio.gather(*workers, return_exceptions=True)
    return trace


def analyse(trace: _Trace, config: LongPromptScenario) -> Row:
    """Split every running stream's inter-token gaps into during/outside the long prefills."""
    outside, during = Histogram(), Histogram()
    series: list[tuple[float, float, bool]] = []
    origin = min((times[0] for times in trace.streams if times), default=0.0)
    for times in trace.streams:
        for before, after in itertools.pairwise(times):
            overlaps = any(after > start and before < end for start, end in trace.windows)
            (during if overlaps else outside).record_seconds(after - before)
            series.append((round(after - origin, 4), round(1000.0 * (after - before), 3), overlaps))
    ttft = Histogram()
    for start, end in trace.windows:
        ttft.record_seconds(end - start)
    p50 = outside.percentile(50) / 1000.0 if outside.total else None
    p99 = during.percentile(99) / 1000.0 if during.total else None
    return {
        "itl_p50_ms": _round(p50),
        "itl_p99_ms": _round(outside.percentile(99) / 1000.0) if outside.total else None,
        "itl_p99_during_ms": _round(p99), "gaps_outside": outside.total, "gaps_during": during.total,
        "itl_ratio": _round(p99 / p50) if p50 and p99 is not None else None,
        "long_ttft_p50_ms": _round(ttft.percentile(50) / 1000.0) if ttft.total else None,
        "arrivals": len(trace.windows),
        "windows_s": [[round(s - origin, 4), round(e - origin, 4)] for s, e in trace.windows],
        # At most a few thousand points: enough to see each stall, small enough for results.json.
        "gaps": series[:: max(1, len(series) // 4000)],
    }


def verdicts(results: BenchResults, rows: list[Row]) -> None:
    for row in rows:
        target(results, row["model"],
               f"{row['model']} ITL p99 of running streams while a {row['prompt_tokens']}-token prompt "
               "arrives ÷ their ITL p50", row["itl_ratio_bar"], row["itl_ratio"], lower_is_better=True,
               figure="long_prompt",
               detail=f"{row['itl_p99_during_ms']} ms during ({row['gaps_during']} gaps) vs "
                      f"{row['itl_p50_ms']} ms outside; {row['streams']} streams")


def section(model: str, rows: list[Row], results: BenchResults) -> Section | None:
    if not rows:
        return None
    table = Table(["scenario", "streams", "prompt tokens", "arrivals", "ITL p50 outside ms",
                   "ITL p99 outside ms", "ITL p99 during ms", "gaps during", "ratio",
                   "long-prompt TTFT p50 ms", "errors"],
                  [[r["scenario"], r["streams"], r["prompt_tokens"], r["arrivals"], r["itl_p50_ms"],
                    r["itl_p99_ms"], r["itl_p99_during_ms"], r["gaps_during"], r["itl_ratio"],
                    r["long_ttft_p50_ms"], ", ".join(r["errors"]) or "none"] for r in rows])
    figure = Figure(anchor(model, "long_prompt"), "Inter-token gaps of running streams around long prompts",
                    "Red points fall inside a long prompt's prefill (shaded); with chunked prefill they stay "
                    "near the blue ones instead of jumping by the whole prefill time.", lambda: draw(rows[0]))
    return Section(anchor(model, "long-prompt-section"), "A long prompt arrives among running streams",
                   "Running streams' inter-token latency inside each long prompt's prefill window (send → "
                   "first token) against outside every window.", [table], [figure])


def draw(row: Row) -> bytes:
    from ds_triton_perf.report.plots import plt, render

    figure, axis = plt.subplots(figsize=(10, 4))
    for start, end in row["windows_s"]:
        axis.axvspan(start, end, color="#d62728", alpha=0.12)
    for overlaps, colour, label in ((False, "#1f77b4", "gap outside a prefill"),
                                    (True, "#d62728", "gap overlapping a long prefill")):
        points = [(t, ms) for t, ms, inside in row["gaps"] if inside == overlaps]
        axis.scatter([t for t, _ in points], [ms for _, ms in points], s=4, color=colour, label=label)
    if row["itl_p50_ms"]:
        axis.axhline(row["itl_p50_ms"], color="#2ca02c", linestyle="--", label="ITL p50 outside")
        axis.axhline(row["itl_ratio_bar"] * row["itl_p50_ms"], color="#7f7f7f", linestyle=":",
                     label=f"{row['itl_ratio_bar']:g}× p50 (the bar)")
    axis.set(title=f"{row['model']}: {row['prompt_tokens']}-token prompts among {row['streams']} streams",
             xlabel="time since the first token (s)", ylabel="inter-token gap (ms, log scale)", yscale="log")
    axis.legend(fontsize=7, loc="upper right")
    return render(figure)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


KIND = Kind(key="long_prompt", title="Long prompt among streams", config=LongPromptScenario, run=run,
            verdicts=verdicts, section=section, tasks=("generation",))
