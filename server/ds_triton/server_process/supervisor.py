"""The model supervisor: a dead Python stub takes its model out of service, then back.

What Triton 2.51 does by itself when a model's stub dies (SIGKILL, SIGSEGV, the
OOM killer): nothing. The stub is left a zombie, the model stays READY, requests
routed to that instance fail with INTERNAL "Stub process ... is not healthy"
after about a second, and nothing restarts it (python_backend has carried the
restart as a TODO since 24.06). Streams of a decoupled model whose stub died
never receive their final response.

So ``ds-triton serve`` watches each model's stubs (children of tritonserver,
mapped to their model by their arguments, see ``stubs.py``) and, when one dies:

1. unloads the model through Triton's repository API: it stops being ready at
   once, on HTTP and gRPC, and new requests get "model not ready"-class errors
   that clients retry elsewhere;
2. loads it again after a back-off (1 s, doubling, at most 60 s), without
   touching the other models or the server;
3. after ``max_crashes`` within ``window_s`` leaves it unloaded and says why, in
   the log and in ``ds-triton serve``'s output. A change to the model's files
   (the repository watcher) loads it again with a clean slate.

Stubs ending because the model is being unloaded or reloaded (by this
supervisor, the watcher or anyone with the repository API) are not crashes: the
model is then not READY in the repository index, or a newer stub serves the
same instance. Triton 25.12+ also reports a model with a dead stub as not ready
and reaps the stub itself; both only change how the death is seen (the process
is gone rather than a zombie), not what happens next.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from ds_triton.server_process.procfs import PROC, describe_exit, read_stat
from ds_triton.server_process.repository_watch import RepositoryWatcher
from ds_triton.server_process.stubs import Stub, find_stubs
from ds_triton.server_process.triton_api import TritonApi, TritonApiError

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class RestartPolicy:
    """When to reload a crashed model, and when to give up on it."""

    max_crashes: int = 5
    window_s: float = 600.0
    first_delay_s: float = 1.0
    max_delay_s: float = 60.0

    def delay(self, crashes_in_window: int) -> float:
        """Seconds to wait before the reload that follows the n-th crash in the window."""
        return float(min(self.max_delay_s, self.first_delay_s * 2 ** max(0, crashes_in_window - 1)))


class Health(Enum):
    SERVING = "serving"
    RESTARTING = "restarting"  # unloaded after a crash, reload pending
    LOADING = "loading"
    DOWN = "down"  # gave up after too many crashes


@dataclass
class ModelRecord:
    """What the supervisor knows about one model."""

    name: str
    health: Health = Health.SERVING
    stubs: dict[int, Stub] = field(default_factory=dict)  # by pid
    crashes: collections.deque[float] = field(default_factory=collections.deque)
    crashes_total: int = 0
    reloads_ok: int = 0
    reloads_failed: int = 0
    restart_at: float = 0.0
    decoupled: bool | None = None  # streams: their in-flight requests die with the stub
    busy: bool = False  # a load of ours is under way
    pending: str = ""  # the files changed again during that load: load once more after it
    reason: str = ""


Report = Callable[[str], None]
Spawn = Callable[[Callable[[], None]], None]


def _in_thread(work: Callable[[], None]) -> None:
    threading.Thread(target=work, name="ds-triton-model-load", daemon=True).start()


class ModelSupervisor:
    """Watches one tritonserver's stubs (and optionally its repository) from a thread."""

    def __init__(
        self,
        api: TritonApi,
        server_pid: int,
        policy: RestartPolicy | None = None,
        watcher: RepositoryWatcher | None = None,
        poll_seconds: float = 2.0,
        check_interval_s: float = 0.2,
        report: Report | None = None,
        retire_after_s: float = 30.0,
        proc: Path = PROC,
        spawn: Spawn = _in_thread,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api = api
        self.server_pid = server_pid
        self.policy = policy or RestartPolicy()
        self.watcher = watcher
        self.poll_seconds = poll_seconds
        self.check_interval_s = check_interval_s
        self._report = report or LOG.warning
        self._proc = proc
        self._spawn = spawn  # runs a (blocking) model load off the supervisor's thread
        self._clock = clock
        self._next_discovery = 0.0
        self._next_poll = 0.0
        self.retire_after_s = retire_after_s
        self._retired: list[tuple[Stub, float]] = []  # survivors of a crashed model, kill-by time
        self._models: dict[str, ModelRecord] = {}
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> ModelSupervisor:
        self._thread = threading.Thread(target=self._run, name="ds-triton-supervisor", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop watching and acting (pending reloads are dropped); returns within a tick."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def records(self) -> dict[str, ModelRecord]:
        """A snapshot of every model's record (for status output and metrics)."""
        with self._lock:
            return {name: _copy(record) for name, record in self._models.items()}

    # -- the loop ----------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick(self._clock())
            except Exception:  # the supervisor must outlive any one bad round
                LOG.exception("supervisor round failed")
            self._stop.wait(self.check_interval_s)

    def tick(self, now: float) -> None:
        """One round: judge watched stubs, find new ones, apply repository changes, reload."""
        self._check_stubs(now)
        self.end_retired(now)
        if now >= self._next_discovery:
            self._discover()
            self._next_discovery = now + 1.0
        if self.watcher is not None and now >= self._next_poll:
            self._apply_repository_changes()
            self._next_poll = now + self.poll_seconds
        self._restart_due(now)

    def _record(self, model: str) -> ModelRecord:
        record = self._models.get(model)
        if record is None:
            record = self._models[model] = ModelRecord(model)
        return record

    def _discover(self) -> None:
        """Start watching stubs of READY models that are not yet watched."""
        with self._lock:
            known = {pid for record in self._models.values() for pid in record.stubs}
            known |= {stub.pid for stub, _ in self._retired}  # a crashed version's, not the new one's
        fresh = [stub for stub in find_stubs(self.server_pid, self._proc) if stub.pid not in known]
        if not fresh:
            return
        try:
            index = self.api.index()
        except (TritonApiError, OSError):
            return
        with self._lock:
            for stub in fresh:
                record = self._record(stub.model)
                state = index.get(stub.model)
                if record.busy or state is None or state.state != "READY":
                    continue  # still loading: a stub that dies now is a load failure Triton reports
                if record.health is Health.SERVING:
                    record.stubs[stub.pid] = stub
            unknown = {stub.model for stub in fresh if self._models[stub.model].decoupled is None}
        for model in unknown:
            decoupled = self._is_decoupled(model)
            with self._lock:
                self._record(model).decoupled = decoupled

    def _is_decoupled(self, model: str) -> bool | None:
        try:
            config = self.api.config(model)
        except (TritonApiError, OSError):
            return None
        return bool(config.get("model_transaction_policy", {}).get("decoupled", False))

    def _check_stubs(self, now: float) -> None:
        dead: dict[str, list[tuple[Stub, str]]] = {}
        with self._lock:
            for record in self._models.values():
                for stub in list(record.stubs.values()):
                    stat = read_stat(stub.pid, self._proc)
                    if stub.same_process(stat) and stat is not None and not stat.is_zombie:
                        continue
                    how = describe_exit(stat.exit_status) if stub.same_process(stat) and stat else "exited"
                    dead.setdefault(record.name, []).append((stub, how))
        for model, stubs in dead.items():
            self._judge_deaths(model, stubs, now)

    def _judge_deaths(self, model: str, dead: list[tuple[Stub, str]], now: float) -> None:
        with self._lock:
            record = self._record(model)
            if record.busy:  # our own load/unload retires these stubs
                for stub, _ in dead:
                    record.stubs.pop(stub.pid, None)
                return
        live = find_stubs(self.server_pid, self._proc)
        replaced = [
            stub for stub, _ in dead
            if any(s.instance == stub.instance and s.start_ticks > stub.start_ticks for s in live)
        ]  # fmt: skip
        try:
            state = self.api.index().get(model)
        except (TritonApiError, OSError):
            return  # tritonserver busy or going away: judge on the next round
        with self._lock:
            if len(replaced) == len(dead) or state is None or state.state != "READY":
                # Reloaded or unloaded by someone else: their stubs end normally.
                for stub, _ in dead:
                    record.stubs.pop(stub.pid, None)
                return
            self._on_crash(record, dead, now)

    # -- crash handling -------------------------------------------------------------

    def end_retired(self, now: float) -> None:
        """Kill the healthy stubs of a crashed model once their requests had time to finish.

        Triton 2.51 never finishes unloading a model whose stub died while it had
        requests (the failed requests keep the old version alive), so its other
        stubs would otherwise run on, unused, holding their memory until tritonserver exits.
        """
        due = [(stub, at) for stub, at in self._retired if at <= now]
        if not due:
            return
        self._retired = [(stub, at) for stub, at in self._retired if at > now]
        for stub, _ in due:
            stat = read_stat(stub.pid, self._proc)
            if stub.same_process(stat) and stat is not None and not stat.is_zombie:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(stub.pid, signal.SIGKILL)
                self._report(f"{stub.model}: ended stub {stub.instance} (pid {stub.pid}) of the crashed "
                             "version, which Triton never finished unloading")

    def _on_crash(self, record: ModelRecord, dead: list[tuple[Stub, str]], now: float) -> None:
        what = "; ".join(f"stub {stub.instance} (pid {stub.pid}) {how}" for stub, how in dead)
        dead_pids = {stub.pid for stub, _ in dead}
        self._retired += [
            (stub, now + self.retire_after_s) for pid, stub in record.stubs.items() if pid not in dead_pids
        ]
        record.stubs.clear()
        record.crashes_total += 1
        self._unload_quietly(record.name)  # first: readiness turns false now
        if record.decoupled:
            self._report(f"{record.name}: streams that were running on the dead stub get no final response "
                         "from Triton 2.51; they end when their clients' deadlines pass")
        self._note_failure(record, now, what)

    def _note_failure(self, record: ModelRecord, now: float, what: str) -> None:
        """Count a crash or failed reload; schedule the next reload or give up."""
        record.crashes.append(now)
        while record.crashes and record.crashes[0] < now - self.policy.window_s:
            record.crashes.popleft()
        count = len(record.crashes)
        if count >= self.policy.max_crashes:
            record.health = Health.DOWN
            record.reason = (
                f"{count} crashes within {self.policy.window_s:.0f}s (last: {what}); left unloaded. "
                "Fix the cause, then change a file of the model (or restart serve) to load it again"
            )
            self._report(f"{record.name}: DOWN: {record.reason}")
            return
        delay = self.policy.delay(count)
        record.health = Health.RESTARTING
        record.restart_at = now + delay
        record.reason = what
        self._report(
            f"{record.name}: {what}; model unloaded (not ready), reloading in {delay:.0f}s "
            f"(crash {count} of {self.policy.max_crashes} allowed within {self.policy.window_s:.0f}s)"
        )

    def _restart_due(self, now: float) -> None:
        with self._lock:
            due = [
                r for r in self._models.values()
                if r.health is Health.RESTARTING and not r.busy and r.restart_at <= now
            ]  # fmt: skip
            for record in due:
                record.busy = True
                record.health = Health.LOADING
        for record in due:
            self._load_in_background(record.name, "restart")

    def _load_in_background(self, model: str, why: str) -> None:
        self._spawn(lambda: self._load(model, why))

    def _load(self, model: str, why: str) -> None:
        """Load ``model`` (its record is marked busy); ``why`` is "restart", "added" or "changed"."""
        started = self._clock()
        try:
            self.api.load(model)
            error = None
        except (TritonApiError, OSError) as exc:
            error = exc
        with self._lock:
            record = self._record(model)
            record.busy = False
            pending, record.pending = record.pending, ""
            if self._stop.is_set():
                return
            if pending:  # the files changed again while it loaded
                record.busy = True
            elif error is None:
                record.health = Health.SERVING
                record.reason = ""
                record.reloads_ok += why == "restart"
            elif why == "restart":
                record.reloads_failed += 1
                self._note_failure(record, self._clock(), f"reload failed: {error}")
            else:
                record.health = Health.DOWN
                record.reason = f"load failed: {error}"
        if pending:
            self._load_in_background(model, pending)
        elif error is None:
            verb = "reloaded" if why == "restart" else "loaded"
            self._report(f"{model}: {verb} in {self._clock() - started:.1f}s; serving")
        elif why == "restart":
            self._unload_quietly(model)
        else:
            self._report(f"{model}: load failed (change its files to retry): {error}")

    def _unload_quietly(self, model: str) -> None:
        try:
            self.api.unload(model)
        except (TritonApiError, OSError) as exc:
            self._report(f"{model}: unload failed: {exc}")

    # -- live loading ------------------------------------------------------------------

    def _apply_repository_changes(self) -> None:
        assert self.watcher is not None
        for change in self.watcher.changes():
            with self._lock:
                record = self._record(change.model)
                record.stubs.clear()  # its stubs are about to be replaced or ended
                if change.action == "unload":
                    self._models.pop(change.model, None)
                    start = False
                elif record.busy:
                    record.pending = change.why
                    start = False
                else:
                    # New files: a clean slate, even for a model that was given up on.
                    record.crashes.clear()
                    record.health = Health.LOADING
                    record.busy = start = True
            if change.action == "unload":
                self._report(f"{change.model}: removed from the repository; unloading")
                self._unload_quietly(change.model)
            else:
                self._report(f"{change.model}: {change.why} in the repository; loading")
                if start:
                    self._load_in_background(change.model, change.why)


def _copy(record: ModelRecord) -> ModelRecord:
    return ModelRecord(
        name=record.name,
        health=record.health,
        stubs=dict(record.stubs),
        crashes=collections.deque(record.crashes),
        crashes_total=record.crashes_total,
        reloads_ok=record.reloads_ok,
        reloads_failed=record.reloads_failed,
        restart_at=record.restart_at,
        decoupled=record.decoupled,
        busy=record.busy,
        pending=record.pending,
        reason=record.reason,
    )
