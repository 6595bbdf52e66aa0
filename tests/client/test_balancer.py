"""Balancer: least-outstanding choice, passive ejection, cool-down, probation, active health."""

from __future__ import annotations

import pytest

from ds_triton_client.balancer import Balancer
from ds_triton_client.endpoints import parse_endpoints


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make(n: int = 2, max_fails: int = 3, fail_timeout: float = 10.0) -> tuple[Balancer, FakeClock]:
    clock = FakeClock()
    urls = [f"http://127.0.0.1:{9000 + i}" for i in range(n)]
    return Balancer(parse_endpoints(urls), max_fails, fail_timeout, clock=clock), clock


def test_picks_endpoint_with_fewest_outstanding_requests() -> None:
    balancer, _ = make(3)
    first = balancer.acquire()
    second = balancer.acquire()
    third = balancer.acquire()
    assert len({first.endpoint, second.endpoint, third.endpoint}) == 3
    balancer.release(second)
    assert balancer.acquire().endpoint == second.endpoint


def test_equal_load_is_spread_not_pinned_to_the_first() -> None:
    balancer, _ = make(2)
    seen = set()
    for _ in range(4):
        state = balancer.acquire()
        seen.add(state.endpoint)
        balancer.release(state)
    assert len(seen) == 2


def test_ejects_after_max_fails_consecutive_failures_and_returns_after_cool_down() -> None:
    balancer, clock = make(2, max_fails=3, fail_timeout=10.0)
    bad = balancer.endpoints[0]
    for _ in range(3):
        state = balancer.acquire(avoid=[balancer.endpoints[1]])
        assert state.endpoint == bad
        balancer.release(state, failure="connection refused")
    assert [s["available"] for s in balancer.snapshot()] == [False, True]
    for _ in range(5):
        state = balancer.acquire()
        assert state.endpoint == balancer.endpoints[1]
        balancer.release(state)
    clock.now += 10.0
    assert balancer.snapshot()[0]["available"] is True


def test_success_resets_the_consecutive_failure_count() -> None:
    balancer, _ = make(1, max_fails=2)
    state = balancer.acquire()
    balancer.release(state, failure="x")
    balancer.release(balancer.acquire())
    balancer.release(balancer.acquire(), failure="y")
    assert balancer.snapshot()[0]["available"] is True


def test_after_cool_down_one_failure_ejects_again() -> None:
    balancer, clock = make(1, max_fails=3, fail_timeout=5.0)
    for _ in range(3):
        balancer.release(balancer.acquire(), failure="down")
    clock.now += 5.0
    balancer.release(balancer.acquire(), failure="still down")
    assert balancer.snapshot()[0]["available"] is False


def test_failures_of_in_flight_requests_do_not_extend_the_ejection() -> None:
    balancer, clock = make(1, max_fails=1, fail_timeout=5.0)
    straggler = balancer.acquire()
    balancer.release(balancer.acquire(), failure="down")
    clock.now += 4.0
    balancer.release(straggler, failure="down too")
    clock.now += 1.0
    assert balancer.snapshot()[0]["available"] is True


def test_passing_health_check_takes_an_ejected_endpoint_back_at_once() -> None:
    balancer, _ = make(2, max_fails=1, fail_timeout=60.0)
    bad = balancer.endpoints[0]
    balancer.release(balancer.acquire(avoid=[balancer.endpoints[1]]), failure="down")
    assert balancer.snapshot()[0]["available"] is False
    balancer.set_health(bad, True)
    assert balancer.snapshot()[0]["available"] is True


def test_failing_health_check_keeps_endpoint_out_until_it_passes() -> None:
    balancer, _ = make(2)
    balancer.set_health(balancer.endpoints[0], False, "server not ready")
    for _ in range(3):
        state = balancer.acquire()
        assert state.endpoint == balancer.endpoints[1]
        balancer.release(state)
    assert balancer.snapshot()[0]["last_error"] == "server not ready"


def test_when_all_are_out_the_one_returning_first_is_tried() -> None:
    balancer, clock = make(2, max_fails=1, fail_timeout=10.0)
    a, b = balancer.endpoints
    balancer.release(balancer.acquire(avoid=[b]), failure="down")
    clock.now += 1
    balancer.release(balancer.acquire(avoid=[a]), failure="down")
    assert not balancer.any_available()
    assert balancer.acquire().endpoint == a


def test_avoid_prefers_untried_endpoints_but_falls_back() -> None:
    balancer, _ = make(2)
    a, b = balancer.endpoints
    assert balancer.acquire(avoid=[a]).endpoint == b
    assert balancer.acquire(avoid=[a, b]).endpoint in (a, b)


def test_needs_an_endpoint() -> None:
    with pytest.raises(ValueError):
        Balancer([])
