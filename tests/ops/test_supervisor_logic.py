"""The supervisor's decisions on a fake /proc and a fake Triton: what is a crash, back-off, giving up."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from ds_triton.server_process.procfs import describe_exit
from ds_triton.server_process.repository_watch import RepositoryWatcher
from ds_triton.server_process.stubs import find_stubs, parse_stub_argv
from ds_triton.server_process.supervisor import Health, ModelSupervisor, RestartPolicy
from ds_triton.server_process.triton_api import ModelState, TritonApiError
from tests.ops.fake_proc import FakeProc, exited, signalled

SERVER = 1000


class FakeTriton:
    """Records repository calls; ``states`` is what the index reports."""

    def __init__(self, states: dict[str, str]) -> None:
        self.states = dict(states)
        self.calls: list[tuple[str, str]] = []
        self.fail_loads: set[str] = set()

    def index(self) -> dict[str, ModelState]:
        return {name: ModelState(name, state) for name, state in self.states.items()}

    def config(self, model: str) -> dict[str, object]:
        return {"model_transaction_policy": {"decoupled": model == "gen"}}

    def unload(self, model: str) -> None:
        self.calls.append(("unload", model))
        self.states[model] = "UNLOADING"

    def load(self, model: str, timeout: float = 600.0) -> None:
        self.calls.append(("load", model))
        if model in self.fail_loads:
            raise TritonApiError(f"load of {model} failed")
        self.states[model] = "READY"


@pytest.fixture
def proc(tmp_path: Path) -> FakeProc:
    fake = FakeProc(tmp_path / "proc")
    fake.add(SERVER, 1, ["tritonserver"])
    fake.add_stub(2001, SERVER, "emb", 0)
    fake.add_stub(2002, SERVER, "emb", 1)
    fake.add_stub(3001, SERVER, "gen", 0)
    return fake


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def supervisor(proc: FakeProc, triton: FakeTriton, reports: list[str], **kwargs: object) -> ModelSupervisor:
    clock = Clock()
    sup = ModelSupervisor(
        triton,  # type: ignore[arg-type]
        SERVER,
        report=reports.append,
        proc=proc.root,
        spawn=lambda work: work(),  # loads run inline, so each tick is deterministic
        clock=clock,
        **kwargs,  # type: ignore[arg-type]
    )
    original = sup.tick

    def tick(now: float) -> None:  # the loads the tick starts see the same time
        clock.now = now
        original(now)

    sup.tick = tick  # type: ignore[method-assign]
    return sup


def test_stub_arguments_name_model_instance_and_region() -> None:
    argv = ["/run/backends/python/triton_python_backend_stub", "/srv/repo/text_embedding/1/model.py",
            "triton_python_backend_shm_region_ab_12", "1048576", "1048576", "19526", "/run/backends/python",
            "336", "text_embedding_0_1", "DEFAULT"]  # fmt: skip
    region = "triton_python_backend_shm_region_ab_12"
    assert parse_stub_argv(argv) == ("text_embedding", "text_embedding_0_1", region)
    auto_complete = [*argv[:8], "text_embedding", "DEFAULT"]  # checks the config while loading, then exits
    assert parse_stub_argv(auto_complete) is None
    assert parse_stub_argv(["bash", "-c", "exec /x/triton_python_backend_stub ..."]) is None


def test_only_the_servers_own_live_stubs_are_found(proc: FakeProc) -> None:
    proc.add_stub(4001, 999, "other_servers_model", 0)
    proc.die(2002, signalled(signal.SIGKILL))
    assert sorted(s.pid for s in find_stubs(SERVER, proc.root)) == [2001, 3001]


def test_exit_statuses_in_words() -> None:
    assert describe_exit(signalled(signal.SIGKILL)) == "killed by SIGKILL"
    assert describe_exit(signalled(signal.SIGSEGV)) == "killed by SIGSEGV"
    assert describe_exit(exited(1)) == "exit code 1"


def test_back_off_doubles_and_is_capped() -> None:
    policy = RestartPolicy(first_delay_s=1, max_delay_s=10)
    assert [policy.delay(n) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]


def test_a_killed_stub_unloads_only_its_model_then_reloads_it_after_the_delay(proc: FakeProc) -> None:
    triton = FakeTriton({"emb": "READY", "gen": "READY"})
    reports: list[str] = []
    sup = supervisor(proc, triton, reports)
    sup.tick(0.0)  # discovers the three stubs
    proc.die(2001, signalled(signal.SIGKILL))
    sup.tick(0.2)
    assert triton.calls == [("unload", "emb")]
    assert "stub emb_0_0 (pid 2001) killed by SIGKILL" in reports[-1]
    assert "reloading in 1s" in reports[-1]
    assert sup.records()["emb"].health is Health.RESTARTING
    sup.tick(0.5)  # not yet due
    assert triton.calls == [("unload", "emb")]
    sup.tick(1.3)
    assert triton.calls == [("unload", "emb"), ("load", "emb")]
    assert sup.records()["emb"].health is Health.SERVING
    assert sup.records()["emb"].reloads_ok == 1
    assert "emb: reloaded" in reports[-1]
    assert sup.records()["gen"].crashes_total == 0


def test_repeated_crashes_back_off_then_leave_the_model_down(proc: FakeProc) -> None:
    triton = FakeTriton({"emb": "READY", "gen": "READY"})
    reports: list[str] = []
    sup = supervisor(proc, triton, reports, policy=RestartPolicy(max_crashes=3, window_s=100))
    now, pid = 0.0, 5000
    sup.tick(now)
    victim = 3001
    for crash in range(1, 4):
        proc.die(victim, signalled(signal.SIGSEGV))
        now += 1
        sup.tick(now)
        if crash < 3:
            assert f"reloading in {2 ** (crash - 1)}s" in reports[-1]
            now += 2 ** (crash - 1) + 0.1
            sup.tick(now)  # reloaded
            pid += 1
            proc.add_stub(pid, SERVER, "gen", 0, start=100 + crash)
            now += 1.1
            sup.tick(now)  # discovers the new stub
            victim = pid
    assert any("gen: streams that were running on the dead stub" in r for r in reports)
    assert not any("emb: streams" in r for r in reports)
    record = sup.records()["gen"]
    assert record.health is Health.DOWN
    assert "3 crashes within 100s" in record.reason and "killed by SIGSEGV" in record.reason
    assert reports[-1].startswith("gen: DOWN:")
    loads = triton.calls.count(("load", "gen"))
    sup.tick(now + 1000)
    assert triton.calls.count(("load", "gen")) == loads == 2


def test_a_failed_reload_counts_and_is_retried_later(proc: FakeProc) -> None:
    triton = FakeTriton({"emb": "READY", "gen": "READY"})
    triton.fail_loads.add("gen")
    reports: list[str] = []
    sup = supervisor(proc, triton, reports)
    sup.tick(0.0)
    proc.die(3001, exited(1))
    sup.tick(0.1)
    sup.tick(1.2)
    assert "reload failed: load of gen failed" in reports[-1]
    assert "reloading in 2s" in reports[-1]
    assert sup.records()["gen"].reloads_failed == 1


@pytest.mark.parametrize("how", ["replaced by a newer stub", "unloaded by someone else"])
def test_stubs_ending_in_a_reload_or_unload_are_not_crashes(proc: FakeProc, how: str) -> None:
    triton = FakeTriton({"emb": "READY", "gen": "READY"})
    reports: list[str] = []
    sup = supervisor(proc, triton, reports)
    sup.tick(0.0)
    if how == "replaced by a newer stub":
        proc.add_stub(3002, SERVER, "gen", 0, start=200)
    else:
        triton.states["gen"] = "UNLOADING"
    proc.reap(3001)
    sup.tick(0.2)
    assert triton.calls == [] and reports == []
    assert sup.records()["gen"].crashes_total == 0


def test_surviving_stubs_of_a_crashed_model_are_ended_after_the_grace(
    proc: FakeProc, monkeypatch: pytest.MonkeyPatch
) -> None:
    killed: list[tuple[int, int]] = []
    monkeypatch.setattr(
        "ds_triton.server_process.supervisor.os.kill", lambda pid, sig: killed.append((pid, sig))
    )
    triton = FakeTriton({"emb": "READY", "gen": "READY"})
    reports: list[str] = []
    sup = supervisor(proc, triton, reports, retire_after_s=10, policy=RestartPolicy(first_delay_s=100))
    sup.tick(0.0)
    proc.die(2001, signalled(signal.SIGKILL))
    sup.tick(0.2)
    sup.tick(9.0)
    assert killed == []
    sup.tick(10.3)
    assert killed == [(2002, signal.SIGKILL)]
    assert "ended stub emb_0_1 (pid 2002)" in reports[-1]


def test_repository_changes_load_and_unload_and_revive_a_model_given_up_on(
    proc: FakeProc, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    for name in ("emb", "gen"):
        (repo / name / "1").mkdir(parents=True)
        (repo / name / "config.pbtxt").write_text(f'name: "{name}"')
    watcher = RepositoryWatcher(repo)
    watcher.baseline()
    triton = FakeTriton({"emb": "READY", "gen": "READY"})
    reports: list[str] = []
    sup = supervisor(proc, triton, reports, watcher=watcher, policy=RestartPolicy(max_crashes=1))
    sup.tick(0.0)
    proc.die(3001, signalled(signal.SIGKILL))
    sup.tick(0.2)
    assert sup.records()["gen"].health is Health.DOWN
    (repo / "gen" / "1" / "model.json").write_text("{}")  # the user fixes the model
    (repo / "new").mkdir()
    (repo / "new" / "config.pbtxt").write_text('name: "new"')
    sup.tick(3.0)  # seen once: not settled yet
    assert ("load", "gen") not in triton.calls
    sup.tick(6.0)
    assert ("load", "gen") in triton.calls and ("load", "new") in triton.calls
    assert sup.records()["gen"].health is Health.SERVING
    (repo / "emb" / "config.pbtxt").unlink()
    sup.tick(9.0)
    assert triton.calls[-1] == ("unload", "emb")
    assert "emb" not in sup.records()
