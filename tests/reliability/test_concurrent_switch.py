"""Many clients asking for a mode change at once: one switch, the rest refused, all audited."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from pathlib import Path

import httpx2
import pytest

from .load import Tally, full_history, new_client, settled_status, switch
from .service import ServiceProcess

# The counted category each steady mode admits: a request of it holds a drain open.
HOLDER = {"production": "/profiles/1", "maintenance": "/metadata/profiles/extensions"}
OTHER = {"production": "maintenance", "maintenance": "production"}


async def _wait_in_flight(client: httpx2.AsyncClient, count: int) -> None:
    while sum((await client.get("/server/status")).json()["in_flight"].values()) < count:
        await asyncio.sleep(0.01)


async def burst(url: str, clients: int, rounds: int, seed: int) -> tuple[Tally, list[Counter[str]]]:
    """Rounds of ``clients`` simultaneous switch requests; returns what each round got."""
    rng = random.Random(seed)
    tally = Tally()
    per_round: list[Counter[str]] = []
    async with new_client(url, clients + 4) as client:
        for number in range(rounds):
            mode = (await client.get("/server/status")).json()["mode"]
            before = dict(tally.switched), tally.switch_refused
            held = number % 2 == 0
            if held:
                # A slow request in the mode being left keeps the first switch draining
                # while all the others arrive: they must be refused, not queued.
                method = "GET" if mode == "production" else "POST"
                slow = asyncio.create_task(
                    client.request(method, HOLDER[mode], params={"delay": "0.8"})
                )
                await _wait_in_flight(client, 1)
                targets = [OTHER[mode]] * clients
            else:
                targets = [rng.choice(list(OTHER)) for _ in range(clients)]
            statuses = await asyncio.wait_for(
                asyncio.gather(*(switch(client, tally, t, f"burst{number}") for t in targets)), 20
            )
            if held:
                tally.sent += 1
                assert (await slow).status_code == 200
            new = {k: v for k, v in tally.switched.items() if k not in before[0]}
            got = Counter(new.values())
            got["refused"] = tally.switch_refused - before[1]
            got["other"] = sum(1 for s in statuses if s not in (200, 503))
            per_round.append(got)
            if held:
                assert got["completed"] == 1, got
                assert got["refused"] + got["noop"] == clients - 1, got
    return tally, per_round


def concurrent_switches(tmp_path: Path, clients: int, rounds: int, seed: int) -> None:
    args = ("--drain-timeout", "10", "--demo-delay", "0", "--log-level", "warning")
    with ServiceProcess(tmp_path / "servermode.db", tmp_path / "service.log", *args) as service:
        tally, per_round = asyncio.run(burst(service.url, clients, rounds, seed))
        status = asyncio.run(settled_status(service.url))
        history = asyncio.run(full_history(service.url))
    tally.publish()
    assert tally.lost == [] and tally.violations == [] and tally.switch_failed == []
    assert all(got["other"] == 0 for got in per_round)
    # Every answer the clients got is one record of the history, and nothing else is.
    mine = [r for r in history if (r["request_id"] or "").startswith("burst")]
    outcomes = Counter(r["outcome"] for r in mine)
    answered = Counter(tally.switched.values())
    assert outcomes == {**answered, "refused": tally.switch_refused}
    assert {r["request_id"]: r["outcome"] for r in mine if r["outcome"] != "refused"} == (
        tally.switched
    )
    assert status["in_flight"] == dict.fromkeys(status["in_flight"], 0)
    assert not status["state"].startswith("draining")


@pytest.mark.timeout(60)
def test_concurrent_switch_requests(tmp_path: Path) -> None:
    """6 rounds of 40 simultaneous switch requests: one switch each, the rest 503 or noop."""
    concurrent_switches(tmp_path, clients=40, rounds=6, seed=4)


@pytest.mark.soak
@pytest.mark.timeout(600)
def test_soak_concurrent_switch_requests(tmp_path: Path) -> None:
    """60 rounds of 200 simultaneous switch requests."""
    concurrent_switches(tmp_path, clients=200, rounds=60, seed=40)
