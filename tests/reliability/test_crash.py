"""Killing a real ``servermode serve`` process mid-switch, under load, again and again.

After each kill (SIGKILL: no goodbye; SIGTERM: graceful) the service is restarted on the same
SQLite file: it must come back in a steady mode, with every switch a client saw answered 200
in its history, and a drain the kill interrupted recorded as ``recovered``.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import pytest
from servermode.adapters.cli.commands import GRACE_MARGIN
from servermode.adapters.store.sqlite import SQLiteStore
from servermode.core import PersistedState

from .conftest import FIGURES
from .load import Tally, client_loop, full_history, new_client, switch
from .service import ServiceProcess

SERVE_ARGS = ("--drain-timeout", "2", "--demo-delay", "0.02", "--log-level", "warning")
OTHER = {"production": "maintenance", "maintenance": "production"}
HOLDER = {"production": ("GET", "/profiles/1"), "maintenance": ("POST", "/metadata/x")}


@dataclass
class Campaign:
    """What the kills left behind, checked after each restart."""

    seen: dict[str, str] = field(default_factory=dict)  # request id -> outcome answered 200
    kills: int = 0
    mid_drain: int = 0
    recovered: int = 0
    sent: int = 0


async def _flip_until_stopped(
    client: httpx2.AsyncClient, tally: Tally, stop: asyncio.Event, rng: random.Random
) -> None:
    holders: set[asyncio.Task[httpx2.Response]] = set()

    def done(holder: asyncio.Task[httpx2.Response]) -> None:
        holders.discard(holder)
        if not holder.cancelled():
            holder.exception()  # a kill cuts it: retrieved, so asyncio does not complain

    while not stop.is_set():
        mode = (await client.get("/server/status")).json()["mode"]
        if rng.random() < 0.7:
            # A slow request in the mode being left makes this switch drain for a while.
            method, path = HOLDER[mode]
            delay = f"{rng.uniform(0.1, 0.6):.2f}"
            holder = asyncio.create_task(client.request(method, path, params={"delay": delay}))
            holders.add(holder)
            holder.add_done_callback(done)
            await asyncio.sleep(0.01)
        await switch(client, tally, OTHER[mode], "crash")


async def _run_and_kill(
    service: ServiceProcess, sig: signal.Signals, clients: int, rng: random.Random, wait_drain: bool
) -> Tally:
    """Load and flip ``service``; send ``sig`` at a random point (or once a drain is on)."""
    tally = Tally()
    stop = asyncio.Event()
    async with new_client(service.url, clients + 8) as client:
        tasks = [
            asyncio.create_task(client_loop(client, tally, stop, random.Random(rng.random()), 0.05))
            for _ in range(clients)
        ]
        tasks.append(asyncio.create_task(_flip_until_stopped(client, tally, stop, rng)))
        await asyncio.sleep(rng.uniform(0.05, 0.4))
        if wait_drain:
            for _ in range(200):
                status: dict[str, Any] = (await client.get("/server/status")).json()
                if status["state"].startswith("draining"):
                    break
                await asyncio.sleep(0.005)
        service.signal(sig)
        await asyncio.to_thread(service.wait, 20)
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    return tally


def _left_in_file(path: Path) -> PersistedState:
    store = SQLiteStore(path)
    try:
        persisted = store.load()
    finally:
        store.close()
    assert persisted is not None
    return persisted


def campaign(tmp_path: Path, sig: signal.Signals, kills: int, clients: int, seed: int) -> Campaign:
    rng = random.Random(seed)
    state, log = tmp_path / "servermode.db", tmp_path / "service.log"
    found = Campaign()
    # uvicorn says when a graceful stop is done only at info level.
    level = ("--log-level", "info") if sig is signal.SIGTERM else ()
    service = ServiceProcess(state, log, *SERVE_ARGS, *level)
    for number in range(kills + 1):
        service.start()
        history = asyncio.run(full_history(service.url))
        status = httpx2.get(f"{service.url}/server/status").json()
        # Back in a steady mode, which the newest record leads to.
        assert status["state"] in ("production", "maintenance")
        assert history[0]["to_state"] == status["state"]
        # Nothing the clients were told is missing, and ids only grow.
        kept = {r["request_id"]: r["outcome"] for r in history if r["request_id"] in found.seen}
        assert kept == found.seen
        ids = [r["id"] for r in history]
        assert ids == sorted(ids, reverse=True) == list(range(len(ids), 0, -1))
        found.recovered = sum(r["outcome"] == "recovered" for r in history)
        if number == kills:
            service.stop()
            break
        wait_drain = number % 2 == 0
        tally = asyncio.run(_run_and_kill(service, sig, clients, rng, wait_drain))
        found.kills += 1
        found.sent += tally.sent
        found.seen.update(
            {k: v for k, v in tally.switched.items() if v in ("completed", "forced", "noop")}
        )
        FIGURES["requests sent"] += tally.sent
        FIGURES["switches made"] += tally.switches
        FIGURES["faults injected"] += 1
        FIGURES["cut by kills"] += len(tally.lost)
        assert tally.violations == []
        left = _left_in_file(state)
        if left.state.is_draining:
            found.mid_drain += 1
        if sig is signal.SIGTERM:
            # A graceful stop lets the drain under way finish: never a drain left behind.
            # (uvicorn re-raises the signal once it has shut down: -15 is a graceful exit.)
            assert service.wait() in (0, -signal.SIGTERM)
            assert log.read_text().count("Application shutdown complete") == found.kills
            assert not left.state.is_draining
    return found


@pytest.mark.timeout(90)
def test_sigkill_mid_switch_under_load(tmp_path: Path) -> None:
    """10 SIGKILLs of a loaded service, half of them once a drain is seen: restarts are whole."""
    found = campaign(tmp_path, signal.SIGKILL, kills=10, clients=30, seed=4)
    # Kills landed inside drains (recovered at restart) and after switches the clients saw.
    assert found.mid_drain >= 3
    assert found.recovered == found.mid_drain
    assert len(found.seen) >= 4


@pytest.mark.timeout(90)
def test_sigterm_mid_switch_under_load(tmp_path: Path) -> None:
    """SIGTERM during drains under load: a graceful stop completes the switch under way."""
    found = campaign(tmp_path, signal.SIGTERM, kills=2, clients=30, seed=5)
    assert found.recovered == 0


@pytest.mark.soak
@pytest.mark.timeout(900)
def test_soak_sigkill_mid_switch_under_load(tmp_path: Path) -> None:
    """60 SIGKILLs of a service under heavier load."""
    found = campaign(tmp_path, signal.SIGKILL, kills=60, clients=100, seed=40)
    assert found.recovered == found.mid_drain > 0


@pytest.mark.soak
@pytest.mark.timeout(900)
def test_soak_sigterm_mid_switch_under_load(tmp_path: Path) -> None:
    """10 SIGTERMs of a service under heavier load."""
    found = campaign(tmp_path, signal.SIGTERM, kills=10, clients=100, seed=50)
    assert found.recovered == 0


@pytest.mark.timeout(30)
def test_sigterm_does_not_wait_forever_for_a_hung_request(tmp_path: Path) -> None:
    """A request that never ends delays a graceful stop by the drain timeout, not forever."""
    args = ("--app", "tests.reliability.faulty_app:app", "--drain-timeout", "0.5")
    service = ServiceProcess(tmp_path / "servermode.db", tmp_path / "service.log", *args)
    service.start()
    try:
        with httpx2.Client(base_url=service.url, timeout=0.3) as client:
            with pytest.raises(httpx2.TimeoutException):
                client.get("/profiles/hang")
            assert client.get("/server/status").json()["in_flight"]["profile"] == 1
        started = time.monotonic()
        service.signal(signal.SIGTERM)
        service.wait(10)
        took = time.monotonic() - started
    finally:
        service.stop()
    FIGURES["faults injected"] += 2
    assert took < 1 + GRACE_MARGIN + 1.5  # the drain timeout rounded up, the margin, slack
    assert "timeout graceful shutdown exceeded" in service.output()
