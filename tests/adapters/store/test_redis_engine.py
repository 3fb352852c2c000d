"""The Redis fleet engine against a real redis-server of the test's own (stopped, restarted)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

import pytest
from servermode.adapters.store.redis import RedisFleetEngine, check_fleet_url
from servermode.core import CONTEXT_SERVICES, Gate, Mode, Outcome, State
from servermode.core.fleet import (
    DrainReport,
    FleetBypass,
    FleetEngineUnavailable,
    FleetMember,
    FleetOutcome,
    FleetRecord,
    FleetState,
    GateNode,
    Heartbeat,
    ReportOutcome,
    Wake,
)

from .redis_server import RedisServer, redis_server

T = TypeVar("T")


def run(scenario: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(asyncio.wait_for(scenario(), 20))  # type: ignore[arg-type]


@pytest.fixture
def server() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


def state(epoch: int, mode: State = State.PRODUCTION) -> FleetState:
    return FleetState(epoch=epoch, state=mode, since=time.time())


def record(epoch: int) -> FleetRecord:
    return FleetRecord(
        epoch=epoch,
        from_state=State.PRODUCTION,
        to_state=State.MAINTENANCE,
        outcome=FleetOutcome.COMPLETED,
        at=time.time(),
        instances={"a": "drained"},
    )


async def until(predicate: Callable[[], bool], timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


def test_compare_and_set_on_the_epoch(server: RedisServer) -> None:
    async def scenario() -> None:
        engine = RedisFleetEngine(server.url, prefix="t")
        assert await engine.load() is None
        assert await engine.compare_and_set(None, state(1), record(1))
        assert not await engine.compare_and_set(None, state(1), record(1))  # not absent now
        assert not await engine.compare_and_set(7, state(8), record(8))  # wrong epoch
        second = record(2)
        assert await engine.compare_and_set(1, state(2, State.MAINTENANCE), second)
        loaded = await engine.load()
        assert loaded is not None and (loaded.epoch, loaded.state) == (2, State.MAINTENANCE)
        assert [r.epoch for r in await engine.records()] == [2, 1]  # losers wrote nothing
        assert await engine.records(1) == [second]
        await engine.close()

    run(scenario)


def test_of_many_concurrent_compare_and_sets_exactly_one_wins(server: RedisServer) -> None:
    async def scenario() -> None:
        engines = [RedisFleetEngine(server.url, prefix="race") for _ in range(8)]
        await engines[0].compare_and_set(None, state(1))
        results = await asyncio.gather(
            *(e.compare_and_set(1, state(2), record(2)) for e in engines)
        )
        assert sorted(results) == [False] * 7 + [True]
        assert [r.epoch for r in await engines[0].records()] == [2]
        for e in engines:
            await e.close()

    run(scenario)


def test_heartbeats_expire_and_prefixes_keep_fleets_apart(server: RedisServer) -> None:
    async def scenario() -> None:
        one = RedisFleetEngine(server.url, prefix="one")
        two = RedisFleetEngine(server.url, prefix="two")
        now = time.time()
        await one.beat(Heartbeat("a", 1, State.PRODUCTION, {"profile": 2}, now, now), ttl=0.3)
        await one.beat(Heartbeat("b", 1, State.PRODUCTION, {}, now, now), ttl=30)
        assert {m.instance for m in await one.members()} == {"a", "b"}
        assert await two.members() == []
        await asyncio.sleep(0.4)
        assert [m.instance for m in await one.members()] == ["b"]
        await one.leave("b")
        assert await one.members() == []
        report = DrainReport("a", 3, ReportOutcome.TIMED_OUT, now, {"profile": 1})
        await one.report(report)
        await one.report(report)  # idempotent
        assert await one.reports(3) == {"a": report}
        assert await one.reports(4) == {} and await two.reports(3) == {}
        await one.close()
        await two.close()

    run(scenario)


def test_a_stopped_redis_fails_fast_and_a_restarted_one_serves_again(server: RedisServer) -> None:
    async def scenario() -> None:
        engine = RedisFleetEngine(server.url, prefix="t", timeout=0.5)
        await engine.compare_and_set(None, state(1))
        server.stop()
        started = time.monotonic()
        with pytest.raises(FleetEngineUnavailable, match="redis"):
            await engine.load()
        assert time.monotonic() - started < 2
        server.start()
        assert await engine.load() is None  # restarted without persistence: empty
        await engine.close()

    run(scenario)


def test_wakeups_come_from_other_instances_and_survive_a_restart(server: RedisServer) -> None:
    async def scenario() -> None:
        listener = RedisFleetEngine(server.url, prefix="w", resubscribe_after=0.1)
        writer = RedisFleetEngine(server.url, prefix="w")
        woken: list[float] = []
        kinds: list[Wake] = []

        def woke(what: Wake) -> None:
            woken.append(time.monotonic())
            kinds.append(what)

        listener.subscribe("l", woke)
        await until(lambda: len(woken) >= 1)  # the subscription's own first look
        before = len(woken)
        await writer.compare_and_set(None, state(1))
        await until(lambda: len(woken) > before)
        # A report wakes the instance it names, and no other.
        report = DrainReport("x", 1, ReportOutcome.DRAINED, time.time())
        await writer.report(report, notify="someone-else")
        await writer.report(report, notify="l")
        await until(lambda: kinds[-1] is Wake.REPORT)
        await asyncio.sleep(0.1)
        assert kinds.count(Wake.REPORT) == 1
        server.restart()
        await asyncio.sleep(0.5)
        before = len(woken)
        await until_written(writer)
        await until(lambda: len(woken) > before)
        await listener.close()
        await writer.close()

    async def until_written(writer: RedisFleetEngine) -> None:
        for _ in range(50):
            try:
                await writer.compare_and_set(None, state(1))
                return
            except FleetEngineUnavailable:
                await asyncio.sleep(0.1)

    run(scenario)


@pytest.mark.parametrize(
    "url", ["http://h:1/0", "redis://", "redis://h:99999/0", "redis://h:1/zero"]
)
def test_bad_fleet_urls_are_refused_with_the_reason(url: str) -> None:
    with pytest.raises(ValueError, match="fleet URL"):
        check_fleet_url(url)


def test_two_members_switch_through_redis(server: RedisServer) -> None:
    """The fleet logic end to end on a real Redis, in one loop: the barrier holds, then opens."""

    async def scenario() -> None:
        gates = {name: Gate(CONTEXT_SERVICES) for name in "ab"}
        engines = {name: RedisFleetEngine(server.url, prefix="m") for name in "ab"}
        members = {
            name: FleetMember(
                engines[name],
                GateNode(gates[name]),
                instance=name,
                drain_timeout=5,
                heartbeat_ttl=2,
                period=0.2,
            )
            for name in "ab"
        }
        for member in members.values():
            await member.start()
            member.run_in_background()
        slow = gates["b"].admit("profile")
        switch = asyncio.create_task(members["a"].switch(Mode.MAINTENANCE))
        await until(lambda: gates["b"].state is State.DRAINING_TO_MAINTENANCE)
        await asyncio.sleep(0.5)
        assert not switch.done()
        slow.release()
        done = await switch
        assert done.outcome is Outcome.COMPLETED
        await until(lambda: gates["b"].state is State.MAINTENANCE)
        (last, *_) = await engines["a"].records()
        assert last.instances == {"a": "drained", "b": "drained"}
        server.restart()  # without persistence: comes back empty, the members re-seed it
        await until(lambda: members["a"].lost is None and members["b"].lost is None)
        reseeded = None
        deadline = time.monotonic() + 5
        while reseeded is None and time.monotonic() < deadline:
            with contextlib.suppress(FleetEngineUnavailable):
                reseeded = await engines["a"].load()
            await asyncio.sleep(0.05)
        assert reseeded is not None and reseeded.state is State.MAINTENANCE
        assert reseeded.outcome is FleetOutcome.RESEEDED
        assert {g.state for g in gates.values()} == {State.MAINTENANCE}
        for name in "ab":
            await members[name].stop()
            await engines[name].close()

    run(scenario)


def fleet_bypass(by: str, secret: bool = True, *allow: str) -> FleetBypass:
    digest = "ab" * 32 if secret else None
    return FleetBypass(digest, "cd" * 32 if secret else None, allow, by, time.time())


def test_the_fleets_bypass_is_kept_apart_from_the_state(server: RedisServer) -> None:
    async def scenario() -> None:
        engine = RedisFleetEngine(server.url, prefix="t")
        other = RedisFleetEngine(server.url, prefix="u")
        assert await engine.load_bypass() is None
        assert await engine.compare_and_set(None, state(1))
        a, b = fleet_bypass("a", True, "10.0.0.0/8"), fleet_bypass("b", False)
        assert await engine.publish_bypass(a) is None
        assert await engine.load_bypass() == a
        assert await engine.publish_bypass(b) == a  # answers the one it replaced
        assert await engine.load_bypass() == b
        # Where one is stored, replace=False keeps it and answers it.
        assert await engine.publish_bypass(a, replace=False) == b
        assert await engine.load_bypass() == b
        assert await other.load_bypass() is None  # another prefix, another fleet
        assert await other.publish_bypass(a, replace=False) is None
        assert await other.load_bypass() == a
        loaded = await engine.load()
        assert loaded is not None and loaded.epoch == 1  # publishing bumped no epoch
        assert await engine.records() == []
        await engine.close()
        await other.close()

    run(scenario)


def test_a_malformed_or_unreachable_bypass_is_an_unavailable_engine(server: RedisServer) -> None:
    async def scenario() -> None:
        engine = RedisFleetEngine(server.url, prefix="t", timeout=0.5)
        for value in ("not json", "[1]", '{"published_by": "x"}', '{"secret_sha256": "ab"}'):
            await engine._redis.set(engine.key_bypass, value)
            with pytest.raises(FleetEngineUnavailable, match="malformed"):
                await engine.load_bypass()
        server.stop()
        with pytest.raises(FleetEngineUnavailable, match="redis"):
            await engine.load_bypass()
        with pytest.raises(FleetEngineUnavailable, match="redis"):
            await engine.publish_bypass(fleet_bypass("a"))
        await engine.close()

    run(scenario)
