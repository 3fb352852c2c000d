"""The fleet's bypass: its record, and the follower that publishes and applies it, against
the in-memory engine (rounds run by hand, except where the follower's own loop is tested)."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
from servermode.core.fleet import BypassFollower, FleetBypass, InMemoryFleetEngine
from structlog.testing import capture_logs

from .helpers import Clock

T = TypeVar("T")


def run(scenario: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(asyncio.wait_for(scenario(), 10))  # type: ignore[arg-type]


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def bypass(by: str, secret: str | None = None, *allow: str, at: float = 0.0) -> FleetBypass:
    return FleetBypass(
        secret_sha256=sha(secret) if secret else None,
        cookie_sha256=sha("cookie of " + secret) if secret else None,
        allow=allow,
        published_by=by,
        published_at=at,
    )


class Applied:
    """What the gate of one instance honours: the records applied, in order."""

    def __init__(self, refuse: Callable[[FleetBypass], bool] = lambda _: False) -> None:
        self.records: list[FleetBypass] = []
        self.refuse = refuse

    def __call__(self, record: FleetBypass) -> None:
        if self.refuse(record):
            raise ValueError("not usable here")
        self.records.append(record)

    @property
    def last(self) -> FleetBypass:
        return self.records[-1]


def follower(engine: InMemoryFleetEngine, own: FleetBypass, clock: Clock, **kw: Any) -> Any:
    applied = Applied(kw.pop("refuse", lambda _: False))
    return BypassFollower(engine, own, applied, clock=clock, **kw), applied


class TestRecord:
    def test_round_trip_through_json(self) -> None:
        record = bypass("A", "s3cret-s3cret-s3cret", "10.0.0.0/8", "::1/128", at=12.5)
        data = json.loads(json.dumps(record.to_dict()))
        assert FleetBypass.from_dict(data) == record
        assert data["allow"] == ["10.0.0.0/8", "::1/128"]
        none = bypass("B")
        assert FleetBypass.from_dict(none.to_dict()) == none
        assert none.is_none and not none.has_secret

    def test_the_same_rule_whoever_published_it(self) -> None:
        a = bypass("A", "s3cret-s3cret-s3cret", "10.0.0.0/8", at=1)
        assert a.same_rule(bypass("B", "s3cret-s3cret-s3cret", "10.0.0.0/8", at=2))
        assert not a.same_rule(bypass("A", "other-other-other", "10.0.0.0/8"))
        assert not a.same_rule(bypass("A", "s3cret-s3cret-s3cret"))
        assert not a.same_rule(None)

    @pytest.mark.parametrize(
        "data",
        [
            {"secret_sha256": sha("x"), "cookie_sha256": None},  # one digest without the other
            {"secret_sha256": "not hex", "cookie_sha256": sha("x")},
            {"secret_sha256": sha("x").upper(), "cookie_sha256": sha("y")},
            {"allow": "10.0.0.0/8"},  # a string, not a list
            {"allow": [10]},
            {"published_by": None, "published_at": None},
        ],
    )
    def test_malformed_records_are_refused(self, data: dict[str, Any]) -> None:
        whole = {"published_by": "A", "published_at": 1.0, **data}
        with pytest.raises((ValueError, TypeError, KeyError)):
            FleetBypass.from_dict(whole)

    def test_not_an_object(self) -> None:
        with pytest.raises(ValueError, match="JSON object"):
            FleetBypass.from_dict([1, 2])  # type: ignore[arg-type]


class TestFollower:
    def test_the_last_to_join_decides_and_the_others_follow(self) -> None:
        async def scenario() -> list[dict[str, Any]]:
            clock, engine = Clock(), InMemoryFleetEngine()
            a, applied_a = follower(engine, bypass("A", "first-secret-0123", "10.0.0.0/8"), clock)
            with capture_logs() as logs:
                await a.sync()  # A joins: the fleet's bypass is A's
                assert applied_a.last.published_by == "A"
                assert applied_a.last.published_at == clock.now
                clock.advance(5)
                b, applied_b = follower(engine, bypass("B"), clock)  # B without a bypass
                await b.sync()
                assert applied_b.last.is_none and applied_b.last.published_by == "B"
                await a.sync()  # A reads B's: nothing passes on A either now
                assert applied_a.last == applied_b.last == await engine.load_bypass()
                await a.sync()
                assert len(applied_a.records) == 2  # the same record is applied once
            return logs

        logs = run(scenario)
        replaced = [entry for entry in logs if entry["event"] == "fleet_bypass_replaced"]
        assert len(replaced) == 1
        assert replaced[0]["instance"] == "B" and replaced[0]["replaced"] == "A"
        assert replaced[0]["log_level"] == "warning"
        assert (replaced[0]["secret"], replaced[0]["previous_secret"]) == (False, True)
        followed = [entry for entry in logs if entry["event"] == "fleet_bypass_followed"]
        assert [(f["instance"], f["published_by"]) for f in followed] == [("A", "B")]
        assert "first-secret-0123" not in repr(logs)
        assert sha("first-secret-0123") not in repr(logs)

    def test_a_restart_with_the_same_bypass_warns_of_nothing(self) -> None:
        async def scenario() -> list[dict[str, Any]]:
            clock, engine = Clock(), InMemoryFleetEngine()
            with capture_logs() as logs:
                for name in ("A", "B", "A"):
                    await follower(engine, bypass(name, "same-secret-0123"), clock)[0].sync()
            stored = await engine.load_bypass()
            assert stored is not None and stored.published_by == "A"
            return logs

        assert [e for e in run(scenario) if e["event"] == "fleet_bypass_replaced"] == []

    def test_a_lost_engine_keeps_the_last_bypass_known_and_logs_once(self) -> None:
        async def scenario() -> list[dict[str, Any]]:
            clock, engine = Clock(), InMemoryFleetEngine()
            a, applied = follower(engine, bypass("A", "first-secret-0123"), clock)
            with capture_logs() as logs:
                await a.sync()
                engine.available = False
                for _ in range(3):
                    await a.sync()  # never raises
                assert a.lost is not None
                assert applied.records == [a.current]  # unchanged
                engine.available = True
                await engine.publish_bypass(bypass("C", "second-secret-0123"))
                await a.sync()
                assert a.lost is None and applied.last.published_by == "C"
            return logs

        events = [entry["event"] for entry in run(scenario)]
        assert events.count("fleet_bypass_unreachable") == 1
        assert events.count("fleet_bypass_reachable") == 1

    def test_unreachable_at_start_it_keeps_its_own_then_publishes(self) -> None:
        async def scenario() -> None:
            clock, engine = Clock(), InMemoryFleetEngine()
            engine.available = False
            a, applied = follower(engine, bypass("A", "first-secret-0123"), clock)
            await a.sync()
            assert not a.published and a.current is None and applied.records == []
            engine.available = True
            await a.sync()
            stored = await engine.load_bypass()
            assert a.published and stored is not None and stored.published_by == "A"

        run(scenario)

    def test_an_emptied_engine_gets_the_fleets_bypass_back_once(self) -> None:
        async def scenario() -> None:
            clock, engine = Clock(), InMemoryFleetEngine()
            a, _ = follower(engine, bypass("A", "first-secret-0123", at=1), clock)
            b, applied_b = follower(engine, bypass("B", "second-secret-0123"), clock)
            await a.sync()
            await b.sync()
            await a.sync()  # A follows B's
            engine.wipe()  # a Redis restarted without persistence
            await a.sync()  # A writes back B's, as B published it
            stored = await engine.load_bypass()
            assert stored is not None and stored == b.current
            await b.sync()
            assert applied_b.records == [b.current]  # nothing new for B
            engine.wipe()
            await engine.publish_bypass(bypass("C"))  # C joined first after the wipe
            await a.sync()
            assert a.current.published_by == "C"  # A did not overwrite C's

        run(scenario)

    def test_a_record_it_cannot_use_keeps_the_previous(self) -> None:
        async def scenario() -> list[dict[str, Any]]:
            clock, engine = Clock(), InMemoryFleetEngine()
            a, applied = follower(
                engine,
                bypass("A", "first-secret-0123"),
                clock,
                refuse=lambda r: r.published_by == "X",
            )
            with capture_logs() as logs:
                await a.sync()
                await engine.publish_bypass(bypass("X", None, "not a network"))
                await a.sync()
                await a.sync()
                assert a.current.published_by == "A" and len(applied.records) == 1
            return logs

        events = [entry["event"] for entry in run(scenario)]
        assert events.count("fleet_bypass_unusable") == 1  # not at every round

    def test_start_publishes_before_returning_and_the_loop_follows(self) -> None:
        async def scenario() -> None:
            clock, engine = Clock(), InMemoryFleetEngine()
            a, applied = follower(engine, bypass("A", "first-secret-0123"), clock, period=0.01)
            await a.start()
            assert a.published and applied.last.published_by == "A"  # before the first request
            await engine.publish_bypass(bypass("B"))
            for _ in range(200):
                if applied.last.published_by == "B":
                    break
                await asyncio.sleep(0.01)
            assert applied.last.published_by == "B"
            await a.close()
            await engine.publish_bypass(bypass("C"))
            await asyncio.sleep(0.05)
            assert applied.last.published_by == "B"  # closed: no more reads
            await a.close()  # twice is fine

        run(scenario)

    def test_publishing_never_touches_the_fleet_state(self) -> None:
        async def scenario() -> None:
            clock, engine = Clock(), InMemoryFleetEngine()
            await follower(engine, bypass("A", "first-secret-0123"), clock)[0].sync()
            assert await engine.load() is None  # no state, no epoch
            assert await engine.records() == []

        run(scenario)
