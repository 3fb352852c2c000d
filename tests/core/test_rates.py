"""The request rates a dry run tells, read off the gate's arrival counters."""

from __future__ import annotations

import pytest
from servermode.core import CONTEXT_SERVICES, Gate, Refused, State
from servermode.core.rates import RateMeter


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_arrivals_count_admitted_and_refused_requests() -> None:
    gate = Gate(CONTEXT_SERVICES, State.PRODUCTION)
    gate.admit("profile").release()
    gate.admit("profile").release()
    with pytest.raises(Refused):
        gate.admit("schema")
    gate.admit("server")  # uncounted: no rate
    assert gate.arrivals() == {"profile": 2, "service": 0, "schema": 1, "schema_read": 0}


def test_the_rate_is_the_growth_over_the_window() -> None:
    totals = {"profile": 0}
    clock = Clock()
    meter = RateMeter(lambda: dict(totals), window=10, clock=clock)
    for _ in range(30):  # 5 requests a second for 30 s
        clock.now += 1
        totals["profile"] += 5
        meter.sample()
    rates = meter.rates()
    assert rates.per_second == {"profile": 5.0}
    assert rates.window == 10.0
    for _ in range(10):  # then nothing for 10 s
        clock.now += 1
        meter.sample()
    assert meter.rates().per_second == {"profile": 0.0}


def test_no_time_no_rate() -> None:
    clock = Clock()
    meter = RateMeter(lambda: {"profile": 3}, clock=clock)
    assert meter.rates().per_second == {"profile": 0.0}
    assert meter.rates().window == 0.0
