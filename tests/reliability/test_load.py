"""Hundreds of clients against a real service while its mode flips: nothing lost, nothing wrong."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from servermode.core import CONTEXT_SERVICES, State

from tests.e2e.servers import ThreadedService

from .load import Tally, full_history, ran_where_admitted, run_load, settled_status
from .service import ServiceProcess

SERVE_ARGS = ("--drain-timeout", "10", "--demo-delay", "0.02", "--log-level", "warning")


def load_and_check(tmp_path: Path, *, clients: int, flips: int, seed: int) -> Tally:
    state, log = tmp_path / "servermode.db", tmp_path / "service.log"
    with ServiceProcess(state, log, *SERVE_ARGS) as service:
        tally, _ = asyncio.run(run_load(service.url, clients=clients, flips=flips, seed=seed))
        status = asyncio.run(settled_status(service.url))
        history = asyncio.run(full_history(service.url))
    tally.publish()

    assert tally.lost == []
    assert tally.violations == []
    assert tally.switch_failed == []
    # Every flip was answered 200 once its drain was complete (the timeout is never reached).
    assert sorted(set(tally.switched.values())) == ["completed"]
    assert tally.switches == flips
    assert status["in_flight"] == dict.fromkeys(status["in_flight"], 0)
    # The history holds exactly the switches the clients saw, each under its request id.
    changes = [r for r in history if r["outcome"] in ("completed", "forced")]
    assert len(changes) == tally.switches
    recorded = {r["request_id"]: r["outcome"] for r in history if r["request_id"] in tally.switched}
    assert recorded == tally.switched
    assert {r["outcome"] for r in history} <= {"initialized", "completed"}
    # Every counted category ran, and the modes refused some requests.
    assert set(tally.ran) == set(CONTEXT_SERVICES.counted_categories)
    assert tally.statuses[503] > 0
    assert status["mode"] == ("production" if flips % 2 == 0 else "maintenance")
    return tally


@pytest.mark.timeout(60)
def test_load_while_flipping(tmp_path: Path) -> None:
    """200 clients sending every category during 8 flips: every answer right, none lost."""
    tally = load_and_check(tmp_path, clients=200, flips=8, seed=6)
    assert tally.sent > 1000


@pytest.mark.soak
@pytest.mark.timeout(600)
def test_soak_load_while_flipping(tmp_path: Path) -> None:
    """500 clients during 100 flips: every answer right, none lost."""
    tally = load_and_check(tmp_path, clients=500, flips=100, seed=60)
    assert tally.sent > 20_000


P, DM, M, DP = (
    State.PRODUCTION,
    State.DRAINING_TO_MAINTENANCE,
    State.MAINTENANCE,
    State.DRAINING_TO_PRODUCTION,
)


@pytest.mark.parametrize(
    ("category", "start", "end", "allowed"),
    [
        ("profile", P, P, True),
        ("profile", P, DM, True),  # a switch began while it ran: the drain waits for it
        ("profile", DM, DM, True),  # admitted just before the drain began
        ("profile", P, M, False),  # ran into maintenance: only a forced straggler may
        ("profile", M, M, False),
        ("profile", DP, P, False),  # the drain to production admits no profile request
        ("schema", M, DP, True),
        ("schema", DM, M, False),
        ("schema_read", M, DP, True),
        ("schema_read", P, DM, True),
        ("schema_read", P, M, True),  # maintenance admits it too: the drain did not wait for it
        ("schema_read", M, P, True),
        ("schema_read", DM, DP, True),
        ("schema", P, P, False),
    ],
)
def test_admission_judge(category: str, start: State, end: State, allowed: bool) -> None:
    """The load test's judge accepts exactly the states a request of its category may run in."""
    assert ran_where_admitted(category, start, end) is allowed


def test_only_a_forced_straggler_runs_into_the_next_mode() -> None:
    """A request outliving a forced drain saw the new mode; it is recorded as a straggler."""
    with ThreadedService(drain_timeout=0.2) as running, ThreadPoolExecutor(1) as pool:
        client = running.client()
        slow = pool.submit(client.get, "/profiles/1", params={"delay": 0.8})
        time.sleep(0.2)
        switch = client.post("/server/mode", json={"mode": "maintenance"})
        answer = slow.result()
        record = client.get("/server/transitions?limit=1").json()["transitions"][0]
    seen = answer.json()["seen"]
    start, end = State(seen["start"]), State(seen["end"])
    assert switch.headers["servermode-outcome"] == "forced"
    assert record["stragglers"] == {"profile": 1}
    assert (start, end) == (State.PRODUCTION, State.MAINTENANCE)
    assert not ran_where_admitted("profile", start, end)
    assert ran_where_admitted("profile", start, end, straggler=True)
