"""The tuner's search logic over a fake measurement function with a known optimum.

The fake model serves ``capacity(candidate)`` items/s at most, peaked at
``OPTIMUM`` in every dimension, and its p99 grows with concurrency and falls
with capacity, so the real ladder, objective and search run on it unchanged:
only the live server is replaced.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

from ds_triton_perf.tuning.journal import Journal
from ds_triton_perf.tuning.ladder import climb, concurrency_ladder, start_index
from ds_triton_perf.tuning.measurement import Fidelity, Level, Measurement, relative_ci
from ds_triton_perf.tuning.objective import Objective
from ds_triton_perf.tuning.search import Search, SearchOutcome
from ds_triton_perf.tuning.space import Candidate, Dimension, SearchSpace

CORES = 4
FULL = Fidelity("full", 2.0, 3, 8, 0.05)
P99_LIMIT_MS = 200.0
OPTIMUM = {"instances": 2, "threads": 2, "max_batch_size": 32, "preferred": "half", "max_queue_delay_us": 500}
START = {"instances": 1, "threads": 1, "max_batch_size": 64, "preferred": "quarter",
         "max_queue_delay_us": 5000}


def cores_constraint(candidate: Candidate) -> str | None:
    used = int(candidate["instances"] or 0) * int(candidate["threads"] or 0)
    return None if used <= CORES else f"{used} threads > {CORES} cores"


SPACE = SearchSpace(
    (Dimension("instances", (1, 2, 4)), Dimension("threads", (1, 2, 4)),
     Dimension("max_batch_size", (8, 16, 32, 64)), Dimension("preferred", ("none", "max", "half", "quarter")),
     Dimension("max_queue_delay_us", (0, 500, 2000, 5000))),
    cores_constraint, coupled=(("instances", "threads"),),
)


def capacity(candidate: Candidate) -> float:
    """Items/s the fake candidate serves at most: 200 at the optimum, 12% less per step away."""
    value = 200.0
    for dimension in SPACE.dimensions:
        steps = abs(dimension.index(candidate[dimension.name]) - dimension.index(OPTIMUM[dimension.name]))
        value *= 1 - 0.12 * steps
    return value


class FakeServer:
    """The measurement function; counts live measurements and can be told to fail like Ctrl-C."""

    def __init__(self, objective: Objective, noise: float = 0.0, interrupt_after: int | None = None) -> None:
        self.objective = objective
        self.noise = random.Random(7) if noise else None
        self.noise_share = noise
        self.interrupt_after = interrupt_after
        self.calls: list[tuple[str, str]] = []

    def __call__(self, candidate: Candidate, fidelity: Fidelity, hint: float | None) -> Measurement:
        if self.interrupt_after is not None and len(self.calls) >= self.interrupt_after:
            raise KeyboardInterrupt
        self.calls.append((candidate.key, fidelity.name))
        cap = capacity(candidate)
        if self.noise is not None:
            cap *= 1 + self.noise.uniform(-self.noise_share, self.noise_share)
        levels = climb(lambda load: fake_level(cap, load), self.objective, concurrency_ladder(64), hint)
        best = self.objective.best(levels)
        fallback = None if best else self.objective.fallback(levels)
        seconds_per_level = 3 * fidelity.window_s * (fidelity.min_windows if fidelity.name == "full" else 1)
        return Measurement(candidate.key, candidate.as_dict(), fidelity.name, levels,
                           score=best[0] if best else None, best=best[1] if best else None,
                           fallback=fallback, seconds=10.0 + seconds_per_level * len(levels))


def fake_level(cap: float, load: float, mode: str = "closed") -> Level:
    if mode == "open":
        utilisation = min(load / cap, 0.999)
        p99 = 5.0 / (1 - utilisation)
        return Level("open", load, [p99, p99], throughput=min(load, cap), latency_ms={"p50": 2.0, "p99": p99},
                     requests=100)
    throughput = cap * load / (load + 4)
    p99 = 5.0 + 5.0 * load * 200.0 / cap
    return Level("closed", load, [throughput] * 3, throughput=throughput,
                 latency_ms={"p50": p99 / 3, "p99": p99}, requests=int(throughput * 6))


def search(objective: Objective, server: FakeServer, journal: Journal | None = None,
           budget_s: float | None = None) -> Search:
    return Search(SPACE, objective, server, FULL, journal if journal is not None else Journal(), budget_s)


THROUGHPUT = Objective("throughput", p99_ms=P99_LIMIT_MS)
START_CANDIDATE = SPACE.snap(START)
OPTIMUM_KEY = SPACE.snap(OPTIMUM).key


# -- both modes find the known optimum ------------------------------------------
@pytest.mark.parametrize("mode", ["brute", "quick"])
def test_each_mode_finds_the_known_optimum(mode: str) -> None:
    outcome = search(THROUGHPUT, FakeServer(THROUGHPUT)).run(mode, START_CANDIDATE)  # type: ignore[arg-type]
    assert outcome.complete
    assert outcome.best is not None and outcome.best.candidate == OPTIMUM_KEY
    assert all(cores_constraint(Candidate.of(m.settings)) is None for m in outcome.measurements)


def test_brute_measures_every_valid_grid_point_once_in_full() -> None:
    server = FakeServer(THROUGHPUT)
    search(THROUGHPUT, server).run("brute", START_CANDIDATE)
    valid = SPACE.valid_grid()
    assert len(valid) < SPACE.size  # 4 x 4 and friends break the cores
    assert sorted(k for k, _ in server.calls) == sorted(c.key for c in valid)
    assert {f for _, f in server.calls} == {"full"}
    assert server.calls[0][0] == START_CANDIDATE.key  # the deployed settings first: the "before"


def test_quick_needs_a_fraction_of_brutes_time() -> None:
    brute = search(THROUGHPUT, FakeServer(THROUGHPUT)).run("brute", START_CANDIDATE)
    quick = search(THROUGHPUT, FakeServer(THROUGHPUT)).run("quick", START_CANDIDATE)
    assert quick.spent_s <= 0.3 * brute.spent_s
    assert any(m.fidelity == "screen" for m in quick.measurements)  # successive halving screened some
    assert "converged" in quick.stop_reason


def test_quick_finds_the_optimum_through_measurement_noise() -> None:
    objective = THROUGHPUT
    outcome = search(objective, FakeServer(objective, noise=0.03)).run("quick", START_CANDIDATE)
    assert outcome.best is not None and outcome.best.candidate == OPTIMUM_KEY


def test_both_modes_minimise_p99_at_a_rate() -> None:
    objective = Objective("latency", rate=120.0)

    class OpenLoop(FakeServer):
        def __call__(self, candidate: Candidate, fidelity: Fidelity, hint: float | None) -> Measurement:
            self.calls.append((candidate.key, fidelity.name))
            level = fake_level(capacity(candidate), 120.0, mode="open")
            best = objective.best([level])
            return Measurement(candidate.key, candidate.as_dict(), fidelity.name, [level],
                               score=best[0] if best else None, best=best[1] if best else None,
                               fallback=None if best else objective.fallback([level]), seconds=20.0)

    for mode in ("brute", "quick"):
        outcome = search(objective, OpenLoop(objective)).run(mode, START_CANDIDATE)  # type: ignore[arg-type]
        assert outcome.best is not None and outcome.best.candidate == OPTIMUM_KEY
        assert objective.shown(outcome.best.score) == pytest.approx(5.0 / (1 - 120.0 / 200.0))


# -- checkpoint and resume ---------------------------------------------------------
@pytest.mark.parametrize("mode", ["brute", "quick"])
def test_an_interrupted_search_resumes_from_its_journal(tmp_path: Path, mode: str) -> None:
    uninterrupted = search(THROUGHPUT, FakeServer(THROUGHPUT)).run(mode, START_CANDIDATE)  # type: ignore[arg-type]
    path = tmp_path / "journal.jsonl"
    first = FakeServer(THROUGHPUT, interrupt_after=7)
    with pytest.raises(KeyboardInterrupt):
        search(THROUGHPUT, first, Journal(path)).run(mode, START_CANDIDATE)  # type: ignore[arg-type]
    assert len(path.read_text().splitlines()) == 7

    second = FakeServer(THROUGHPUT)
    resumed = search(THROUGHPUT, second, Journal(path)).run(mode, START_CANDIDATE)  # type: ignore[arg-type]
    assert resumed.replayed == 7
    assert not set(first.calls) & set(second.calls)  # nothing measured twice
    assert len(first.calls) + len(second.calls) == len(uninterrupted.measurements)
    assert _keys(resumed) == _keys(uninterrupted)
    assert resumed.best is not None and resumed.best.candidate == OPTIMUM_KEY
    assert resumed.spent_s == pytest.approx(uninterrupted.spent_s)


def test_a_journal_line_cut_short_by_a_crash_is_measured_again(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    with pytest.raises(KeyboardInterrupt):
        search(THROUGHPUT, FakeServer(THROUGHPUT, interrupt_after=3), Journal(path)).run(
            "brute", START_CANDIDATE)
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:2]) + "\n" + lines[2][: len(lines[2]) // 2])
    assert len(Journal(path)) == 2


def test_the_budget_stops_a_search_with_the_best_so_far() -> None:
    outcome = search(THROUGHPUT, FakeServer(THROUGHPUT), budget_s=200.0).run("quick", START_CANDIDATE)
    assert not outcome.complete and "budget" in outcome.stop_reason
    assert outcome.spent_s >= 200.0
    assert outcome.spent_s - outcome.measurements[-1].seconds < 200.0  # stopped at the first chance
    best = max((m for m in outcome.full if m.feasible), key=lambda m: m.score or 0.0)
    assert outcome.best is best


def _keys(outcome: SearchOutcome) -> list[tuple[str, str]]:
    return [(m.candidate, m.fidelity) for m in outcome.measurements]


# -- the pieces ---------------------------------------------------------------------
def test_neighbours_step_one_value_and_trade_coupled_dimensions() -> None:
    start = SPACE.snap({**START, "instances": 1, "threads": 4})
    around = {c.key for c in SPACE.neighbours(start)}
    traded = start.replace(instances=2, threads=2)
    assert traded.key in around  # (1, 4) -> (2, 2) keeps within the cores
    assert start.replace(instances=2).key not in around  # 2 x 4 threads breaks them
    assert all(len(Candidate.of(json.loads(json.dumps(c.as_dict()))).differences(start)) in (1, 2)
               for c in SPACE.neighbours(start))


def test_the_ladder_climbs_until_a_limit_or_saturation() -> None:
    objective = Objective("throughput", p99_ms=100.0)
    levels = climb(lambda load: fake_level(200.0, load), objective, concurrency_ladder(64))
    assert [lv.load for lv in levels] == [1, 2, 4, 8, 16, 32]  # 32 breaks p99 <= 100 ms
    assert objective.violation(levels[-1]) is not None
    best = objective.best(levels)
    assert best is not None and levels[best[1]].load == 16
    unconstrained = climb(lambda load: fake_level(200.0, load), Objective("throughput"),
                          concurrency_ladder(64))
    assert unconstrained[-1].load == 64  # gains flatten out below 5% per doubling by then


def test_a_hinted_ladder_starts_near_the_hint_and_steps_down_past_a_limit() -> None:
    loads = concurrency_ladder(64)
    assert start_index(loads, 16.0) == loads.index(8.0)
    objective = Objective("throughput", p99_ms=100.0)
    low_capacity = climb(lambda load: fake_level(60.0, load), objective, loads, hint=32.0)
    assert [lv.load for lv in low_capacity] == [16, 8, 4]  # 16 and 8 break the limit at 60 items/s


def test_errors_make_a_level_fail_its_constraints() -> None:
    level = Level("closed", 8, [10.0], throughput=10.0, latency_ms={"p99": 1.0}, requests=99,
                  errors={"OverloadedError": 1})
    reason = Objective("throughput").violation(level)
    assert reason is not None and "OverloadedError 1" in reason


def test_a_level_is_measured_until_its_interval_is_tight_or_capped() -> None:
    assert not FULL.done([100.0, 100.0])  # below the minimum number of windows
    assert FULL.done([100.0, 101.0, 99.0])  # ±2.5% at three windows
    assert not FULL.done([100.0, 130.0, 70.0])
    assert FULL.done([100.0, 130.0, 70.0] * 3 + [100.0])  # the cap
    assert relative_ci([100.0, 110.0]) == pytest.approx(12.706 * math.sqrt(50) / math.sqrt(2) / 105.0)
    assert FULL.screening().max_windows == 2 and FULL.screening().window_s == 1.0


def test_measurements_round_trip_through_the_journal(tmp_path: Path) -> None:
    server = FakeServer(THROUGHPUT)
    measurement = server(START_CANDIDATE, FULL, None)
    journal = Journal(tmp_path / "j.jsonl")
    journal.add(measurement)
    again = Journal(tmp_path / "j.jsonl").get(START_CANDIDATE.key, "full")
    assert again is not None
    assert again.score == measurement.score and again.best_level == measurement.best_level
