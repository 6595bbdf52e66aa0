"""Memory soak: a long mixed run of every model at once, good and bad inputs (issue 9).

Each model with a ``soak`` block gets ``concurrency`` workers that send its
share of requests: good ones (texts or prompts up to the model's limits, in
batches for embedding, varied ``max_tokens`` for generation) and, with
probability ``bad_share``, bad ones that the model must refuse with a 4xx
(blank text, over-long batch, wrong datatype; unknown sampling key, limits
exceeded, empty or over-long prompt; a 503 from the queue policy, before the model
saw the input, is counted apart as shed). Meanwhile the server's processes
(tritonserver and every Python stub) are sampled with
:class:`ds_triton_perf.memory.RssSampler`, through a warm-up of
``warmup_requests``, the measured ``requests``, and ``idle_s`` of quiet after.

Targets: total RSS grows < 100 MB over the measured requests (after the
warm-up); ``idle_s`` after the load every process is within 100 MB of its RSS
at the soak's start; open file descriptors and /dev/shm regions are back to
their start; no good request fails.

The soak is bounded in time as well as in requests: it stops sending after
``max_s`` (or what is left of the run's time budget, keeping ``idle_s`` for
the quiet tail), and the row says how many requests were actually measured.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
from dataclasses import dataclass, field
from typing import Any

from ds_triton_perf.kinds import Kind, KindContext, Row, target
from ds_triton_perf.memory import MB, MemorySample, RssSampler, peak_by_role
from ds_triton_perf.report.document import Figure, Section, Table
from ds_triton_perf.results import BenchResults
from ds_triton_perf.scenarios import ModelScenarios
from ds_triton_perf.texts import text_mix


@dataclass(frozen=True)
class SoakScenario:
    """One model's share of the soak; ``quick_*`` apply with ``--quick``.

    The run-wide settings (``idle_s``, ``sample_interval_s``, the bars) are taken
    from the first model's block.
    """

    name: str = "soak"
    texts: str = ""
    warmup_requests: int = 500
    requests: int = 5000
    quick_warmup_requests: int = 50
    quick_requests: int = 300
    concurrency: int = 4
    batch_sizes: list[int] = field(default_factory=lambda: [1, 2, 4, 8])
    max_tokens: list[int] = field(default_factory=lambda: [1, 8, 32, 128])
    bad_share: float = 0.1
    idle_s: float = 10.0
    quick_idle_s: float = 3.0
    sample_interval_s: float = 0.5
    max_s: float = 900.0
    quick_max_s: float = 120.0
    growth_bar_mb: float = 100.0
    idle_bar_mb: float = 100.0


@dataclass
class _Counts:
    done: int = 0
    good_ok: int = 0
    good_failed: dict[str, int] = field(default_factory=dict)
    bad_refused: int = 0
    bad_shed: int = 0  # 503 before the model saw it (queue policy under load): not an answer about the input
    bad_accepted: int = 0
    bad_server_error: dict[str, int] = field(default_factory=dict)
    examples: dict[str, str] = field(default_factory=dict)  # first message of each failure type
    warm_at: float | None = None


def run(ctx: KindContext, blocks: list[tuple[ModelScenarios, SoakScenario]]) -> None:
    first = blocks[0][1]
    if ctx.server_pid is None:
        ctx.results.notes.append("soak: the server's process is not local or not found; memory not sampled")
    shares = {s.model: (c.quick_warmup_requests if ctx.quick else c.warmup_requests,
                        c.quick_requests if ctx.quick else c.requests) for s, c in blocks}
    ctx.log.step("soak: " + ", ".join(f"{m} {w}+{n} requests" for m, (w, n) in shares.items())
                 + f", then {first.quick_idle_s if ctx.quick else first.idle_s:g} s idle")
    idle_s = first.quick_idle_s if ctx.quick else first.idle_s
    max_s = _time_cap(ctx, first, idle_s)
    sampler = RssSampler(ctx.server_pid, first.sample_interval_s) if ctx.server_pid else None
    counts = {s.model: _Counts() for s, _ in blocks}
    if sampler:
        sampler.__enter__()
    try:
        started = time.time()
        asyncio.run(_drive(ctx, blocks, shares, counts, time.monotonic() + max_s))
        ended = time.time()
        time.sleep(idle_s)
    finally:
        if sampler:
            sampler.__exit__(None, None, None)
    warm = max((c.warm_at or ended) for c in counts.values())
    row = summarise(sampler.samples if sampler else [], started, warm, ended)
    row.update(scenario=first.name, counts={m: _counts_row(c) for m, c in counts.items()},
               good_failed=sum(sum(c.good_failed.values()) for c in counts.values()),
               bad_server_errors=sum(sum(c.bad_server_error.values()) for c in counts.values()),
               requests={m: n for m, (_, n) in shares.items()},
               warmup_requests={m: w for m, (w, _) in shares.items()},
               sent={m: c.done for m, c in counts.items()}, max_s=round(max_s, 1),
               cut_short=any(c.done < sum(shares[m]) for m, c in counts.items()),
               bars={"growth_mb": first.growth_bar_mb, "idle_mb": first.idle_bar_mb})
    if any(c.warm_at is None for c in counts.values()):  # cut short inside the warm-up: no growth to read
        row["growth_mb"] = None
    if row["cut_short"]:
        ctx.results.notes.append(
            f"soak: stopped sending after {max_s:.0f} s (its time cap) with "
            + ", ".join(f"{m} {c.done} of {sum(shares[m])}" for m, c in counts.items())
            + " requests sent; its verdicts are over what was measured")
    ctx.add_row(KIND.key, "", row)
    ctx.log.detail(f"RSS growth after warm-up {row.get('growth_mb')} MB, good failed {row['good_failed']}, "
                   f"bad refused {sum(c.bad_refused for c in counts.values())}")


def _time_cap(ctx: KindContext, config: SoakScenario, idle_s: float) -> float:
    """Seconds of load: ``max_s``, or less to end with the run's time budget (at least a minute)."""
    cap = config.quick_max_s if ctx.quick else config.max_s
    remaining = ctx.remaining_s()
    if remaining is not None:
        cap = min(cap, max(60.0, remaining - idle_s))
    return cap


async def _drive(ctx: KindContext, blocks: list[tuple[ModelScenarios, SoakScenario]],
                 shares: dict[str, tuple[int, int]], counts: dict[str, _Counts], stop_at: float) -> None:
    import aiohttp

    from ds_triton_perf.targets.client import measuring_client

    async with measuring_client(ctx.server.grpc, "grpc") as client, aiohttp.ClientSession() as http:
        tasks = []
        for index, (scenarios, config) in enumerate(blocks):
            await client.model_info(scenarios.model)
            warmup, requests = shares[scenarios.model]
            good = _good_requests(client, scenarios, config, ctx.quick)
            bad = _bad_requests(http, ctx.server.http, scenarios)
            state = counts[scenarios.model]
            rng = random.Random(index)
            for _ in range(config.concurrency):
                tasks.append(asyncio.create_task(_worker(good, bad, rng, config.bad_share, state, warmup,
                                                         warmup + requests, stop_at)))
        await asyncio.gather(*tasks)


async def _worker(good: Any, bad: Any, rng: random.Random, bad_share: float, state: _Counts, warmup: int,
                  total: int, stop_at: float) -> None:
    while state.done < total and time.monotonic() < stop_at:
        state.done += 1
        if rng.random() < bad_share:
            status = await bad()
            if 400 <= status < 500:
                state.bad_refused += 1
            elif status == 503:
                state.bad_shed += 1
            elif status == 200:
                state.bad_accepted += 1
            else:
                state.bad_server_error[str(status)] = state.bad_server_error.get(str(status), 0) + 1
        else:
            try:
                await good()
                state.good_ok += 1
            except Exception as exc:  # counted: a good request must never fail
                name = type(exc).__name__
                state.good_failed[name] = state.good_failed.get(name, 0) + 1
                state.examples.setdefault(name, str(exc)[:300])
        if state.done >= warmup and state.warm_at is None:
            state.warm_at = time.time()


def _good_requests(client: Any, scenarios: ModelScenarios, config: SoakScenario, quick: bool) -> Any:
    model = scenarios.model
    if scenarios.task == "generation":
        prompts = text_mix(scenarios.text_weights(config.texts or scenarios.generation.prompts), 128, seed=5)
        plan = itertools.cycle(zip(prompts, itertools.cycle(config.max_tokens), strict=False))

        async def generate() -> None:
            prompt, max_tokens = next(plan)
            async for _ in client.stream(prompt, model=model, temperature=0, max_tokens=max_tokens,
                                         ignore_eos=True):
                pass

        return generate
    texts = text_mix(scenarios.text_weights(config.texts), 512, seed=5)
    sizes = itertools.cycle(config.batch_sizes)
    offsets = itertools.count()

    async def embed() -> None:
        size = next(sizes)
        start = next(offsets) * 7 % len(texts)
        batch = [texts[(start + i) % len(texts)] for i in range(size)]
        result = await client.embed(batch, model=model)
        if len(result) != size:
            raise ValueError(f"{len(result)} embeddings for {size} texts")

    return embed


def _bad_requests(http: Any, url: str, scenarios: ModelScenarios) -> Any:
    """Requests the model must refuse with a 4xx, in rotation, over HTTP/JSON."""
    model = scenarios.model
    if scenarios.task == "generation":
        long_prompt = " ".join(["word"] * 2000)
        path = f"http://{url}/v2/models/{model}/generate"
        bodies = [{"text_input": "hello", "parameters": {"max_tokens": 100000}},
                  {"text_input": "hello", "parameters": {"no_such_key": 1}},
                  {"text_input": ""},
                  {"text_input": long_prompt, "parameters": {"max_tokens": 4}},
                  {"text_input": "hello", "parameters": {"temperature": -1}}]
    else:
        path = f"http://{url}/v2/models/{model}/infer"

        def text_input(data: list[Any], datatype: str = "BYTES", name: str = "text") -> dict[str, Any]:
            return {"inputs": [{"name": name, "datatype": datatype, "shape": [len(data), 1], "data": data}]}

        # (Data that does not parse as its datatype, e.g. "1" as INT32, gets 500 from Triton 2.51's
        # HTTP frontend itself, before any model runs; the wrong datatype here is well-formed.)
        bodies = [text_input(["   "]), text_input(["a text"] * 65), text_input([1], datatype="INT32"),
                  text_input(["a text"], name="no_such_input"), text_input(["fine", ""])]
    plan = itertools.cycle(bodies)

    async def bad() -> int:
        try:
            async with http.post(path, data=json.dumps(next(plan))) as response:
                await response.read()
                return int(response.status)
        except Exception:  # a dropped connection is the worst answer: count it apart
            return 0

    return bad


def summarise(samples: list[MemorySample], started: float, warm: float, ended: float) -> Row:
    """RSS by role at the soak's start, after warm-up, at its peak, at the end of load and after idle."""
    if not samples:
        return {"processes": [], "series": {}}

    def at(moment: float) -> MemorySample:
        return min(samples, key=lambda s: abs(s.t - moment))

    start, warmed, end, idle = samples[0], at(warm), at(ended), samples[-1]
    peak = peak_by_role(samples)
    roles = sorted(peak)
    processes: list[dict[str, Any]] = [{"role": role, "start_mb": _mb(start.rss_by_role().get(role)),
                  "warm_mb": _mb(warmed.rss_by_role().get(role)), "peak_mb": _mb(peak[role]),
                  "end_mb": _mb(end.rss_by_role().get(role)), "idle_mb": _mb(idle.rss_by_role().get(role))}
                 for role in roles]
    idle_excess = [p["idle_mb"] - p["start_mb"] for p in processes
                   if p["idle_mb"] is not None and p["start_mb"] is not None]
    return {
        "processes": processes,
        "total_start_mb": _mb(start.total_rss_bytes), "total_warm_mb": _mb(warmed.total_rss_bytes),
        "total_peak_mb": _mb(max(s.total_rss_bytes for s in samples)),
        "total_end_mb": _mb(end.total_rss_bytes), "total_idle_mb": _mb(idle.total_rss_bytes),
        "growth_mb": _mb(end.total_rss_bytes - warmed.total_rss_bytes),
        "idle_excess_mb": round(max(idle_excess), 1) if idle_excess else None,
        "fds_start": start.fds, "fds_idle": idle.fds,
        "shm_start": len(start.shm_regions), "shm_idle": len(idle.shm_regions),
        "leftover": (idle.fds - start.fds) + len(idle.shm_regions - start.shm_regions),
        "load_s": round(ended - started, 1), "warm_s": round(warm - started, 1),
        "series": {"t": [round(s.t - started, 2) for s in samples],
                   **{role: [_mb(s.rss_by_role().get(role)) for s in samples] for role in roles}},
    }


def verdicts(results: BenchResults, rows: list[Row]) -> None:
    for row in rows:
        bars = row["bars"]
        measured = sum(_measured_count(row, m) for m in row["requests"])
        requests = f"{measured}" + (" (cut short by its time cap)" if row.get("cut_short") else "")
        target(results, "", f"soak: total RSS growth over {requests} requests after the warm-up",
               bars["growth_mb"], row.get("growth_mb"), lower_is_better=True, unit="MB", figure="soak",
               detail=f"{row.get('total_warm_mb')} → {row.get('total_end_mb')} MB (peak "
                      f"{row.get('total_peak_mb')} MB)" if row.get("processes") else "memory not sampled")
        target(results, "", "soak: largest RSS above its soak-start value, per process, after idle",
               bars["idle_mb"], row.get("idle_excess_mb"), lower_is_better=True, unit="MB", figure="soak")
        target(results, "", "soak: file descriptors and /dev/shm regions above their start after idle", 0,
               row.get("leftover"), lower_is_better=True, unit="", figure="soak",
               detail=f"fds {row.get('fds_start')} → {row.get('fds_idle')}, shm regions "
                      f"{row.get('shm_start')} → {row.get('shm_idle')}" if row.get("processes") else "")
        target(results, "", "soak: good requests that failed", 0, row["good_failed"], lower_is_better=True,
               unit="", figure="soak", detail=_describe_counts(row["counts"]))


def section(model: str, rows: list[Row], results: BenchResults) -> Section | None:
    if not rows:
        return None
    row = rows[0]
    tables = [Table(["process", "start MB", "after warm-up MB", "peak MB", "end of load MB", "after idle MB"],
                    [[p["role"], p["start_mb"], p["warm_mb"], p["peak_mb"], p["end_mb"], p["idle_mb"]]
                     for p in row["processes"]] + ([["total", row["total_start_mb"], row["total_warm_mb"],
                                                     row["total_peak_mb"], row["total_end_mb"],
                                                     row["total_idle_mb"]]] if row["processes"] else []),
                    "Resident memory (RSS)"),
              Table(["model", "warm-up", "measured", "good ok", "good failed", "bad refused (4xx)",
                     "bad shed (503)", "bad accepted", "bad → server error", "first failure of each kind"],
                    [[m, row["warmup_requests"][m], _measured(row, m), c["good_ok"],
                      _kinds(c["good_failed"]), c["bad_refused"], c.get("bad_shed", 0), c["bad_accepted"],
                      _kinds(c["bad_server_error"]),
                      "; ".join(f"{k}: {v}" for k, v in c.get("failure_examples", {}).items()) or "–"]
                     for m, c in row["counts"].items()], "Requests")]
    figures = []
    if row["processes"]:
        figures.append(Figure("soak", "Resident memory during the soak",
                              "Lines should flatten after the warm-up and come back down in the idle tail; "
                              "a line that keeps climbing is a leak.", lambda: draw(row)))
    return Section("soak-section", "Memory soak (every model at once, good and bad inputs)",
                   f"Load for {row.get('load_s', '?')} s (warm-up ends at {row.get('warm_s', '?')} s), then "
                   "idle; RSS of tritonserver and each Python stub sampled from /proc.", tables, figures)


def draw(row: Row) -> bytes:
    from ds_triton_perf.report.plots import plt, render

    series = row["series"]
    figure, axis = plt.subplots(figsize=(10, 4.2))
    for role, values in series.items():
        if role != "t":
            axis.plot(series["t"], values, label=role)
    axis.axvline(row["warm_s"], color="#7f7f7f", linestyle=":", label="end of warm-up")
    axis.axvline(row["load_s"], color="#7f7f7f", linestyle="--", label="end of load")
    axis.set(title="RSS per process during the soak", xlabel="time since the soak started (s)",
             ylabel="resident memory (MB)")
    axis.legend(fontsize=7, loc="upper left")
    axis.grid(True, alpha=0.3)
    return render(figure)


def _counts_row(counts: _Counts) -> dict[str, Any]:
    return {"good_ok": counts.good_ok, "good_failed": counts.good_failed, "bad_refused": counts.bad_refused,
            "bad_accepted": counts.bad_accepted, "bad_server_error": counts.bad_server_error,
            "bad_shed": counts.bad_shed,
            "failure_examples": counts.examples}


def _kinds(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {kind}" for kind, n in counts.items()) or "0"


def _describe_counts(counts: dict[str, dict[str, Any]]) -> str:
    return "; ".join(f"{m}: {c['good_ok']} ok, failed {c['good_failed'] or 0}, {c['bad_refused']} bad refused"
                     for m, c in counts.items())


def _measured_count(row: Row, model: str) -> int:
    """Requests sent after the warm-up (fewer than planned when the time cap cut the soak short)."""
    planned, warmup = row["requests"][model], row["warmup_requests"][model]
    return int(max(0, min((row.get("sent") or {}).get(model, warmup + planned) - warmup, planned)))


def _measured(row: Row, model: str) -> str:
    planned, measured = row["requests"][model], _measured_count(row, model)
    return str(planned) if measured >= planned else f"{measured} of {planned}"


def _mb(value: int | None) -> float | None:
    return None if value is None else round(value / MB, 1)


KIND = Kind(key="soak", title="Memory soak", config=SoakScenario, run=run, verdicts=verdicts, section=section,
            joint=True)
