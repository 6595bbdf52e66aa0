"""What log-probabilities cost at 16 streams (issue 16): tokens/s and ITL with ``logprobs: 5`` vs without.

``streams`` closed-loop streams (greedy, ``max_tokens`` each, EOS ignored)
run in rounds of ``round_s``: plain, then the same requests with
``logprobs: top`` (the client then sets ``return_logprobs`` and
``return_cumulative_logprob``, so every response carries its tokens' JSON),
alternating ``rounds`` times so that drift on a shared machine hits both
alike. The verdict is the ratio of the median tokens/s (bar: at least 0.8);
the inter-token latency of each round is reported beside it.

A second verdict covers requests that use none of the new keys: the sampler's
cost per decode step above the bare argmax it replaced (``sampler_cost``),
as a share of the step these rounds measured (bar: at most 1%, well inside the
spread between rounds, which the report prints beside it).
"""

from __future__ import annotations

import asyncio
import statistics
from dataclasses import dataclass
from typing import Literal

from ds_triton_perf.kinds import Kind, KindContext, Row, target
from ds_triton_perf.loadgen import LoadResult, LoadSpec, run_load
from ds_triton_perf.report.document import Figure, Section, Table, anchor
from ds_triton_perf.results import BenchResults
from ds_triton_perf.scenarios import ModelScenarios


@dataclass(frozen=True)
class LogprobsScenario:
    """See the module docstring; ``quick_*`` apply with ``--quick``."""

    name: str = "logprobs"
    streams: int = 16
    max_tokens: int = 64
    top: int = 5
    rounds: int = 3
    quick_rounds: int = 1
    round_s: float = 6.0
    quick_round_s: float = 2.0
    warmup_s: float = 1.0
    protocol: Literal["http", "grpc"] = "grpc"
    ratio_bar: float = 0.8
    sampler_share_bar_pct: float = 1.0


def run(ctx: KindContext, scenarios: ModelScenarios, config: LogprobsScenario) -> None:
    model = scenarios.model
    rounds = config.quick_rounds if ctx.quick else config.rounds
    seconds = config.quick_round_s if ctx.quick else config.round_s
    ctx.log.step(f"{model}: {config.name}: {config.streams} streams, plain vs logprobs={config.top}, "
                 f"{rounds} round(s) of {seconds:g} s each")
    requests = [(prompt, config.max_tokens) for prompt, _ in scenarios.generation_requests(quick=True)]
    spec = LoadSpec(mode="closed", concurrency=config.streams, duration_s=seconds,
                    warmup_s=min(config.warmup_s, 0.5) if ctx.quick else config.warmup_s,
                    request_timeout_s=120.0)
    measured = [_round_row(top, result) for top, result in
                asyncio.run(_drive(ctx, model, config, requests, spec, rounds))]
    row = summarise(measured)
    row.update(sampler_row(ctx, model, config.streams, row["plain_tps"], measured))
    ctx.add_row(KIND.key, model, {
        "scenario": config.name, "streams": config.streams, "top": config.top,
        "max_tokens": config.max_tokens, "ratio_bar": config.ratio_bar,
        "sampler_share_bar_pct": config.sampler_share_bar_pct, **row, "rounds": measured,
    })
    ctx.log.detail(f"{row['plain_tps']} tokens/s plain, {row['logprobs_tps']} with logprobs "
                   f"(ratio {row['ratio']}); ITL p50 {row['plain_itl_p50_ms']} vs "
                   f"{row['logprobs_itl_p50_ms']} ms; sampler with no key {row['sampler_overhead_us']} µs "
                   f"per step above the bare argmax ({row['sampler_share_pct']}% of a step)")


def sampler_row(ctx: KindContext, model: str, streams: int, plain_tps: float | None,
                rounds: list[Row]) -> Row:
    """The no-key sampler cost (see the module docstring) and the plain rounds' spread."""
    from transformers import AutoConfig

    from ds_triton.spec import ModelSpec
    from ds_triton_perf.sampler_cost import measure

    version_dir = ctx.model_repository / model / "1"
    checkpoint = ModelSpec.load(version_dir).resolve_checkpoint(version_dir)
    vocab = int(AutoConfig.from_pretrained(checkpoint).vocab_size)
    cost = measure(vocab, streams)
    # Every stream runs in every step at this load, so a step yields ``streams`` tokens.
    step_ms = streams / plain_tps * 1e3 if plain_tps else None
    plain = [r["tokens_per_s"] for r in rounds if not r["logprobs"] and r["completed"]]
    spread = (max(plain) - min(plain)) / statistics.median(plain) * 100 if len(plain) > 1 else None
    return {"vocab": vocab, "sampler_us": _round(cost.sampler_us), "argmax_us": _round(cost.argmax_us),
            "sampler_overhead_us": _round(cost.overhead_us), "step_ms": _round(step_ms),
            "sampler_share_pct": _round(cost.overhead_us / 1e3 / step_ms * 100) if step_ms else None,
            "plain_spread_pct": _round(spread)}


async def _drive(ctx: KindContext, model: str, config: LogprobsScenario, requests: list[tuple[str, int]],
                 spec: LoadSpec, rounds: int) -> list[tuple[int, LoadResult]]:
    from ds_triton_perf.targets.generation import open_generation_target

    url = ctx.server.grpc if config.protocol == "grpc" else ctx.server.http
    out: list[tuple[int, LoadResult]] = []
    async with (open_generation_target(url, model, requests, config.protocol) as plain,
                open_generation_target(url, model, requests, config.protocol,
                                       sampling={"logprobs": config.top}) as with_logprobs):
        for i in range(rounds):
            for top, request in ((0, plain), (config.top, with_logprobs)):
                label = f"{model} {config.name} round {i + 1} logprobs={top or '-'}"
                out.append((top, await run_load(request, spec, label=label, progress=ctx.progress)))
    return out


def _round_row(top: int, result: LoadResult) -> Row:
    return {"logprobs": top, "tokens_per_s": round(result.tokens_per_s, 3),
            "itl_p50_ms": _round(result.itl_ms.get("p50")), "itl_p99_ms": _round(result.itl_ms.get("p99")),
            "completed": result.completed, "loadgen_cpu_cores": round(result.loadgen_cpu_cores, 3),
            "errors": dict(result.errors)}


def summarise(rounds: list[Row]) -> Row:
    """Medians over the rounds of each kind, and the tokens/s ratio (None where a side is missing)."""
    out: Row = {}
    for side, chosen in (("plain", [r for r in rounds if not r["logprobs"]]),
                         ("logprobs", [r for r in rounds if r["logprobs"]])):
        for key, name in (("tokens_per_s", "tps"), ("itl_p50_ms", "itl_p50_ms"),
                          ("itl_p99_ms", "itl_p99_ms")):
            values = [r[key] for r in chosen if r[key] is not None and r["completed"]]
            out[f"{side}_{name}"] = _round(statistics.median(values)) if values else None
    plain, with_logprobs = out["plain_tps"], out["logprobs_tps"]
    out["ratio"] = _round(with_logprobs / plain) if plain and with_logprobs is not None else None
    out["errors"] = sorted({name for r in rounds for name in r["errors"]})
    return out


def verdicts(results: BenchResults, rows: list[Row]) -> None:
    for row in rows:
        target(results, row["model"],
               f"{row['model']} tokens/s with logprobs={row['top']} on every stream ÷ without, "
               f"{row['streams']} streams", row["ratio_bar"], row["ratio"], figure="logprobs",
               detail=f"{row['logprobs_tps']} vs {row['plain_tps']} tokens/s, ITL p50 "
                      f"{row['logprobs_itl_p50_ms']} vs {row['plain_itl_p50_ms']} ms (medians of "
                      f"{len(row['rounds']) // 2} alternating rounds)")
        if "sampler_share_pct" in row:
            target(results, row["model"],
                   f"{row['model']} sampler cost per decode step with no new key in use, above the bare "
                   f"argmax it replaced, ÷ the step at {row['streams']} streams",
                   row["sampler_share_bar_pct"], row["sampler_share_pct"], lower_is_better=True, unit="%",
                   figure="logprobs",
                   detail=f"{row['sampler_overhead_us']} µs of a {row['step_ms']} ms step "
                          f"({row['sampler_us']} vs {row['argmax_us']} µs, {row['streams']} rows × "
                          f"{row['vocab']} logits, one thread); the plain rounds' tokens/s spread "
                          f"{row['plain_spread_pct']}%")


def section(model: str, rows: list[Row], results: BenchResults) -> Section | None:
    if not rows:
        return None
    summary = Table(["streams", "max_tokens", "plain tokens/s", "logprobs tokens/s", "ratio", "bar",
                     "plain ITL p50/p99 ms", "logprobs ITL p50/p99 ms"],
                    [[r["streams"], r["max_tokens"], r["plain_tps"], r["logprobs_tps"], r["ratio"],
                      r["ratio_bar"], f"{r['plain_itl_p50_ms']} / {r['plain_itl_p99_ms']}",
                      f"{r['logprobs_itl_p50_ms']} / {r['logprobs_itl_p99_ms']}"] for r in rows])
    # The client decodes every response's logprobs JSON too: its CPU shares the machine with the server.
    table = Table(["round", "logprobs", "completed", "tokens/s", "ITL p50 ms", "ITL p99 ms", "loadgen cores",
                   "errors"],
                  [[i // 2 + 1, r["logprobs"] or "–", r["completed"], r["tokens_per_s"], r["itl_p50_ms"],
                    r["itl_p99_ms"], r.get("loadgen_cpu_cores"),
                    ", ".join(f"{k} ×{v}" for k, v in r["errors"].items()) or "none"]
                   for row in rows for i, r in enumerate(row["rounds"])])
    tables = [summary, table]
    costed = [r for r in rows if r.get("sampler_share_pct") is not None]
    if costed:
        tables.append(Table(
            ["rows × vocabulary", "sampler, no key (µs/step)", "bare argmax (µs/step)", "overhead µs",
             "step ms", "share of the step", "bar", "plain rounds' spread"],
            [[f"{r['streams']} × {r['vocab']}", r["sampler_us"], r["argmax_us"], r["sampler_overhead_us"],
              r["step_ms"], f"{r['sampler_share_pct']}%", f"≤ {r['sampler_share_bar_pct']}%",
              f"{r['plain_spread_pct']}%"] for r in costed]))
    figure = Figure(anchor(model, "logprobs"), "Tokens/s and ITL per round, without and with logprobs",
                    "Rounds alternate, so a slow stretch of a shared machine lowers both kinds alike; the "
                    "verdict compares the medians.", lambda: draw(rows[0]))
    return Section(anchor(model, "logprobs-section"), "The cost of log-probabilities",
                   "Closed-loop streams, greedy, rounds alternating without and with logprobs (each "
                   "response then carries its tokens' log-probabilities and top alternatives as JSON).",
                   tables, [figure])


def draw(row: Row) -> bytes:
    from ds_triton_perf.report.plots import plt, render

    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
    for top, colour, label in ((0, "#1f77b4", "plain"), (row["top"], "#d62728", f"logprobs={row['top']}")):
        points = [(i // 2 + 1, r) for i, r in enumerate(row["rounds"]) if r["logprobs"] == top]
        rounds = [p[0] for p in points]
        left.plot(rounds, [p[1]["tokens_per_s"] for p in points], "o-", color=colour, label=label)
        right.plot(rounds, [p[1]["itl_p50_ms"] for p in points], "o-", color=colour, label=f"{label} p50")
        right.plot(rounds, [p[1]["itl_p99_ms"] for p in points], "x--", color=colour, label=f"{label} p99")
    if row["plain_tps"]:
        left.axhline(row["ratio_bar"] * row["plain_tps"], color="#7f7f7f", linestyle=":",
                     label=f"{row['ratio_bar']:g}× plain median (the bar)")
    left.set(title=f"{row['model']}: {row['streams']} streams, {row['max_tokens']} tokens each",
             xlabel="round", ylabel="tokens/s")
    right.set(title="inter-token latency", xlabel="round", ylabel="ms")
    for axis in (left, right):
        axis.set_ylim(bottom=0)
        axis.legend(fontsize=7, loc="lower right")
    return render(figure)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


KIND = Kind(key="logprobs", title="Log-probabilities overhead", config=LogprobsScenario, run=run,
            verdicts=verdicts, section=section, tasks=("generation",))
