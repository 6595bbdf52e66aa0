"""``ds-triton-perf bench``: run the suite, write ``perf/results/<timestamp>/``, print the summary.

Uses a server that is already running (``--http-url``/``--grpc-url``, or
``make serve``'s default ports) or starts one itself over the model
repository with ``ds_triton.server_process.tritonserver.running_server``.
A server it starts writes its step timeline (``DS_TRITON_PROFILE_DIR``) into
the results folder.

Order: each model's core suite (ceiling, load sweeps, perf_analyzer,
genai-perf), then that model's scenario kinds (:mod:`ds_triton_perf.kinds`),
then the joint kinds (the memory soak) across every model.

Every point runs through a :class:`~ds_triton_perf.guard.Guard`: one that
fails is a note in the report, and once the time budget (``--budget-min``)
is spent the points not yet started are skipped, so ``summary.md`` and
``report.html`` are always written.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import platform
import shlex
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from ds_triton.server_process.tritonserver import Ports, ServerOptions, running_server
from ds_triton_perf.analysis import compare
from ds_triton_perf.embedding_bench import EmbeddingBench
from ds_triton_perf.engine_metrics import engine_run
from ds_triton_perf.generation_bench import GenerationBench
from ds_triton_perf.guard import Guard
from ds_triton_perf.kinds import KindContext, registry
from ds_triton_perf.memory import listening_pid
from ds_triton_perf.report import summary_markdown, write_html
from ds_triton_perf.results import BenchResults, write_raw
from ds_triton_perf.scenarios import SCENARIO_DIR, ModelScenarios, default_scenarios
from ds_triton_perf.steps import StepLog
from ds_triton_perf.systems import SYSTEMS, ServerUrls
from ds_triton_perf.timeline import PROFILE_ENV, read_steps, step_stats, window


@dataclass
class BenchOptions:
    """What to run and where.

    Attributes:
        quick: Short runs and fewer sweep points (smoke tests, development).
        out_root: Parent of the timestamped results folder.
        scenario_dir: Folder of ``<model>.yaml`` scenario files.
        model_repository: Served repository (and the peers' model folders).
        server: Use this running server instead of probing/starting one.
        systems: Which systems to drive with the load generator.
        only: Run only scenarios with these names (empty: all).
        models: Run only these models (empty: all with a scenario file).
        progress: Show progress bars.
        start_server: Always start a server (never use one found on the default ports).
        profile_dir: Where a server started elsewhere writes its step timeline.
        budget_min: Minutes after which no new point starts (None: no limit); the
            memory soak is shortened to fit what is left.
    """

    quick: bool = False
    out_root: Path = Path("perf/results")
    scenario_dir: Path = SCENARIO_DIR
    model_repository: Path = Path("model_repository")
    server: ServerUrls | None = None
    systems: Sequence[str] = SYSTEMS
    only: Sequence[str] = ()
    models: Sequence[str] = ()
    progress: bool = True
    start_server: bool = False
    profile_dir: Path | None = None
    budget_min: float | None = None
    command: str = field(default_factory=lambda: shlex.join(["ds-triton-perf", *sys.argv[1:]]))


def run_bench(options: BenchOptions) -> Path:
    """Run the suite; returns the results folder (with report.html and summary.md)."""
    log = StepLog()
    out_dir = options.out_root / datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    out_dir.mkdir(parents=True, exist_ok=True)
    suites = [_filtered(s, options) for s in default_scenarios(options.scenario_dir)
              if not options.models or s.model in options.models]
    results = BenchResults(meta=_meta(options))
    guard = Guard(results.notes, log, None if options.budget_min is None else 60.0 * options.budget_min,
                  errors_path=out_dir / "errors.log")
    profile_dir: Path | None = None

    def measure() -> None:
        nonlocal profile_dir
        with _server(options, out_dir, [s.model for s in suites], log) as (server, pid, profile_dir):
            results.meta["server"] = f"http {server.http}, grpc {server.grpc}"
            if profile_dir is not None:
                results.meta["profile_dir"] = str(profile_dir)
            context = KindContext(results, server, options.model_repository, out_dir, log,
                                  quick=options.quick, progress=options.progress, server_pid=pid,
                                  profile_dir=profile_dir, deadline=guard.deadline)
            ready = []
            for suite in suites:
                if not _model_ready(server, suite.model):
                    results.notes.append(f"{suite.model}: not READY on the server; "
                                         "its scenarios were skipped")
                    log.step(f"{suite.model}: not ready on the server, skipped")
                    continue
                ready.append(suite)
                model_dir = options.model_repository / suite.model
                if suite.task == "embedding":
                    EmbeddingBench(suite, model_dir, server, results, out_dir, log, quick=options.quick,
                                   systems=tuple(options.systems), progress=options.progress,
                                   guard=guard).run()
                else:
                    GenerationBench(suite, model_dir, server, results, out_dir, log, quick=options.quick,
                                    progress=options.progress, guard=guard).run()
                _run_kinds(context, suite, guard)
            _run_joint_kinds(context, ready, guard)

    interrupted = False
    try:
        server_ok = guard.run("the benchmark server", measure)
    except KeyboardInterrupt:  # Ctrl-C: the server is stopped; what was measured is still written
        interrupted, server_ok = True, True
        results.notes.insert(0, f"interrupted (Ctrl-C) after {log.elapsed_s:.0f} s: this report has only "
                                "what was measured before")
        log.step("interrupted: writing what was measured")
    guard.run("reading the server's side (metrics, step timeline)", _attach_server_side, results,
              profile_dir, budgeted=False)
    guard.run("comparisons and verdicts", compare, results, budgeted=False)
    if guard.failed or guard.skipped:
        results.notes.insert(0, f"{len(guard.failed)} point(s) failed and {len(guard.skipped)} were skipped "
                                "(listed below; tracebacks in errors.log).")
    results.meta.update(elapsed_s=round(log.elapsed_s, 1), load_average_end=_load_average(),
                        budget_min=options.budget_min, failed_points=guard.failed,
                        skipped_points=guard.skipped)
    write_raw(results, out_dir)
    summary = summary_markdown(results)
    (out_dir / "summary.md").write_text(summary)
    guard.run("report.html", write_html, results, out_dir / "report.html", budgeted=False)
    print(summary)
    print(f"Report: {out_dir / 'report.html'}\nSummary: {out_dir / 'summary.md'}")
    if interrupted:
        raise KeyboardInterrupt
    if not server_ok:
        raise BenchFailed(f"no server to measure (see the notes in {out_dir / 'summary.md'})")
    return out_dir


class BenchFailed(RuntimeError):
    """The run measured nothing of this project (its server did not start or went away)."""


def _run_kinds(context: KindContext, suite: ModelScenarios, guard: Guard) -> None:
    kinds = registry()
    for key, configs in suite.extra.items():
        if not kinds[key].joint:
            for config in configs:
                guard.run(f"{suite.model} {key} {config.name}", kinds[key].run, context, suite, config)


def _run_joint_kinds(context: KindContext, suites: Sequence[ModelScenarios], guard: Guard) -> None:
    for key, kind in registry().items():
        blocks = [(suite, config) for suite in suites for config in suite.extra.get(key, [])]
        if kind.joint and blocks:
            guard.run(key, kind.run, context, blocks)


def _attach_server_side(results: BenchResults, profile_dir: Path | None) -> None:
    """Each Triton run's engine metrics (from its metrics diff) and its slice of the step timeline."""
    steps = {}
    for run in results.load_runs:
        if run.server is not None:
            run.engine = engine_run(run.server.metrics_delta)
        if profile_dir is None or run.system != "triton":
            continue
        if run.model not in steps:
            steps[run.model] = read_steps(profile_dir, run.model)
        run.steps = step_stats(window(steps[run.model], *run.result.window_unix))


@contextlib.contextmanager
def _server(options: BenchOptions, out_dir: Path, models: Sequence[str],
            log: StepLog) -> Iterator[tuple[ServerUrls, int | None, Path | None]]:
    """The server to measure, its local pid (memory sampling) and where it writes its step timeline."""
    if options.server is not None:
        yield options.server, _local_pid(options.server.http), options.profile_dir
        return
    default = ServerUrls("127.0.0.1:8000", "127.0.0.1:8001", "http://127.0.0.1:8002/metrics")
    if not options.start_server and _ready(default.http):
        log.step("using the server already running on 127.0.0.1:8000 (`make serve`)")
        yield default, _local_pid(default.http), options.profile_dir
        return
    ports = Ports.free()
    log.step(f"starting tritonserver on {options.model_repository} (ports {ports.http}/{ports.grpc})")
    server_options = ServerOptions(model_repository=options.model_repository, ports=ports,
                                   run_dir=out_dir / "server", model_control="none")
    present = [m for m in models if (options.model_repository / m / "config.pbtxt").is_file()]
    profile_dir = (out_dir / "profile").resolve()
    profile_dir.mkdir(parents=True, exist_ok=True)
    with _environment(PROFILE_ENV, str(profile_dir)), \
            running_server(server_options, log_path=out_dir / "server.log", models=present) as server:
        log.detail("server ready")
        yield ServerUrls(server.http_url, server.grpc_url, server.metrics_url), server.pid, profile_dir


@contextlib.contextmanager
def _environment(name: str, value: str) -> Iterator[None]:
    """``name=value`` in this process's environment (the server inherits it) for the block."""
    previous = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous


def _local_pid(http_url: str) -> int | None:
    host, _, port = http_url.rpartition(":")
    if host not in ("127.0.0.1", "localhost", "0.0.0.0", "") or not port.isdigit():
        return None
    return listening_pid(int(port))


def _filtered(suite: ModelScenarios, options: BenchOptions) -> ModelScenarios:
    if not options.only:
        return suite
    return dataclasses.replace(
        suite,
        perf_analyzer=[s for s in suite.perf_analyzer if s.name in options.only],
        loadgen=[s for s in suite.loadgen if s.name in options.only],
        ceiling=suite.ceiling if "ceiling" in options.only else None,
        generation=suite.generation if "static_batches" in options.only
        else dataclasses.replace(suite.generation, static_batch_size=0),
        genai_perf=[s for s in suite.genai_perf if s.name in options.only],
        extra={key: [c for c in configs if c.name in options.only] for key, configs in suite.extra.items()},
    )


def _ready(http_url: str, path: str = "/v2/health/ready") -> bool:
    try:
        with urllib.request.urlopen(f"http://{http_url}{path}", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _model_ready(server: ServerUrls, model: str) -> bool:
    return _ready(server.http, f"/v2/models/{model}/ready")


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _meta(options: BenchOptions) -> dict[str, object]:
    cpu = cpu_model()
    cores = len(os.sched_getaffinity(0))
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{cpu}, {cores} cores, {platform.system()} {platform.release()}, no GPU"
        if not Path("/dev/nvidia0").exists() else f"{cpu}, {cores} cores, NVIDIA GPU",
        "command": options.command,
        "quick": options.quick,
        "started_unix": time.time(),
        # Other processes on the machine skew every number: a busy start is worth knowing.
        "load_average_start": _load_average(),
    }


def _load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())
