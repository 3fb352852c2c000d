"""Fleet mode end to end: real service processes, one real redis-server per test."""

from __future__ import annotations

import signal
import time
from typing import Any

import httpx2

from tests.adapters.helpers import assert_documented

from .fleet import Background, Instance, add_instance, fleet_of, flip_under_load, until
from .servers import cli

PROFILE = "/profiles/1"
SCHEMA_WRITE = "/metadata/profiles/extensions"


def state_of(instance: Instance) -> str:
    return str(instance.status()["state"])


def fleet_records(instance: Instance) -> list[dict[str, Any]]:
    """The fleet's records as the instance reads them from Redis ([] while it cannot)."""
    answer = instance.get("/server/fleet")
    if answer.status_code == 503:
        return []
    records: list[dict[str, Any]] = answer.json()["records"]
    return records


def test_three_instances_drain_as_one() -> None:
    """A slow profile request on B holds A's switch; all three refuse meanwhile; then all
    three are in maintenance: A's POST returned only after B's request finished."""
    with fleet_of("A", "B", "C", SERVERMODE_DRAIN_TIMEOUT="10") as (_, fleet):
        a, b, c = fleet["A"], fleet["B"], fleet["C"]
        slow = Background(lambda: b.get(f"{PROFILE}?delay=1.5"))
        until(lambda: b.status()["in_flight"].get("profile") == 1, what="B's slow request")
        switch = Background(lambda: a.switch("maintenance"))
        until(lambda: all(state_of(i) == "draining_to_maintenance" for i in fleet.values()))
        for instance in fleet.values():
            assert instance.get(f"{PROFILE}?delay=0").status_code == 503
            refused = instance.post(SCHEMA_WRITE)
            assert refused.status_code == 503 and refused.json()["code"] == 5030
        assert c.status()["fleet"]["not_drained"] == ["B"]
        assert_documented(c.get("/server/status"), "/server/status", "GET")
        answer = switch.join()
        assert slow.join().status_code == 200
        assert slow.ended is not None and switch.ended is not None
        assert slow.ended <= switch.ended
        assert answer.status_code == 200 and answer.json() == {"server changed": "maintenance"}
        for instance in fleet.values():
            until(lambda i=instance: state_of(i) == "maintenance")  # type: ignore[misc]
            assert instance.get(f"{PROFILE}?delay=0").status_code == 503
            assert instance.post(SCHEMA_WRITE).status_code == 200
        (record, *_) = fleet_records(c)
        assert record["outcome"] == "completed"
        assert record["instances"] == {"A": "drained", "B": "drained", "C": "drained"}
        assert_documented(c.get("/server/fleet"), "/server/fleet", "GET")
        assert_documented(c.get("/server/health/ready"), "/server/health/ready", "GET")
        assert [i["instance"] for i in c.fleet()["fleet"]["instances"]] == ["A", "B", "C"]
        shown = cli("status", env={"SERVERMODE_URL": c.url})
        assert shown.returncode == 0, shown.stderr
        assert "fleet: epoch 3, maintenance, Redis connected" in shown.stdout
        for name in ("A", "B", "C *"):
            assert f"\n{name} " in shown.stdout
        local = b.get("/server/transitions").json()["transitions"][0]
        assert (local["outcome"], local["to_state"]) == ("completed", "maintenance")
        # B's own history keeps the fleet-level record: every instance's outcome, one epoch.
        assert local["fleet"]["instances"] == {"A": "drained", "B": "drained", "C": "drained"}
        assert local["fleet"]["epoch"] == record["epoch"]
        assert local["fleet"] == record
        assert_documented(b.get("/server/transitions"), "/server/transitions", "GET")


def test_two_concurrent_switches_exactly_one_wins() -> None:
    with fleet_of("A", "B") as (_, fleet):
        a, b = fleet["A"], fleet["B"]
        # A request that holds every drain for a moment, so that both asks meet one drain.
        slow = Background(lambda: a.get(f"{PROFILE}?delay=1"))
        until(lambda: a.status()["in_flight"].get("profile") == 1)
        asks = [Background(lambda i=i: i.switch("maintenance")) for i in (a, b)]  # type: ignore[misc]
        answers = [ask.join() for ask in asks]
        slow.join()
        assert sorted(r.status_code for r in answers) == [200, 503]
        (lost,) = [r for r in answers if r.status_code == 503]
        assert lost.json()["code"] == 5031 and "Retry-After" in lost.headers
        loser = b if answers[1] is lost else a
        outcomes = [t["outcome"] for t in loser.get("/server/transitions").json()["transitions"]]
        assert "refused" in outcomes
        switches = [r for r in fleet_records(a) if r["outcome"] != "initialized"]
        assert len(switches) == 1


def test_the_starter_killed_mid_barrier_another_instance_completes() -> None:
    with fleet_of("A", "B", "C", SERVERMODE_DRAIN_TIMEOUT="20") as (_, fleet):
        a, b, c = fleet["A"], fleet["B"], fleet["C"]
        slow = Background(lambda: b.get(f"{PROFILE}?delay=1"))
        until(lambda: b.status()["in_flight"].get("profile") == 1)
        Background(lambda: a.switch("maintenance"))  # its caller gets no answer: A dies
        until(lambda: state_of(c) == "draining_to_maintenance")
        a.kill(signal.SIGKILL)
        slow.join()
        until(lambda: state_of(b) == "maintenance" and state_of(c) == "maintenance", timeout=8)
        (record, *_) = fleet_records(c)
        assert record["outcome"] == "completed" and record["starter"] == "A"
        assert record["completed_by"] in ("B", "C")
        # A had nothing to drain: it reported before it died, or it is named as expired.
        assert record["instances"].get("A") == "drained" or record["expired"] == ["A"]
        assert record["instances"]["B"] == record["instances"]["C"] == "drained"


def test_an_instance_killed_mid_drain_is_named_once_its_heartbeat_expires() -> None:
    with fleet_of("A", "B", SERVERMODE_DRAIN_TIMEOUT="20") as (_, fleet):
        a, b = fleet["A"], fleet["B"]
        Background(lambda: b.get(f"{PROFILE}?delay=30"))  # would hold the barrier 20 s
        until(lambda: b.status()["in_flight"].get("profile") == 1)
        switch = Background(lambda: a.switch("maintenance"))
        until(lambda: state_of(b) == "draining_to_maintenance")
        started = time.monotonic()
        b.kill(signal.SIGKILL)
        answer = switch.join()
        assert answer.status_code == 200
        assert time.monotonic() - started < 5  # the heartbeat TTL (1 s), not the deadline
        (record, *_) = fleet_records(a)
        assert record["outcome"] == "completed" and record["expired"] == ["B"]


def test_redis_stopped_while_steady_instances_serve_refuse_changes_and_recover() -> None:
    with fleet_of("A", "B") as (redis, fleet):
        a, b = fleet["A"], fleet["B"]
        assert a.switch("maintenance").status_code == 200
        redis.stop()
        until(lambda: a.status()["fleet"]["engine"] == "lost", what="A sees Redis gone")
        assert a.post(SCHEMA_WRITE).status_code == 200  # still serving maintenance
        assert a.get(f"{PROFILE}?delay=0").status_code == 503
        refused = b.switch("production")
        assert refused.status_code == 503, refused.text
        assert refused.json()["code"] == 5033
        assert "fleet engine is unreachable" in refused.json()["description"]
        ready = a.get("/server/health/ready").json()
        assert ready["fleet"] == "lost"
        redis.start()  # no persistence: it comes back empty, and the instances re-seed it
        until(
            lambda: all(i.status()["fleet"]["engine"] == "connected" for i in fleet.values()),
            what="both see Redis back",
        )
        until(lambda: any(r["outcome"] == "reseeded" for r in fleet_records(b)))
        assert {state_of(i) for i in fleet.values()} == {"maintenance"}  # kept its mode
        assert len([r for r in fleet_records(b) if r["outcome"] == "reseeded"]) == 1
        assert b.switch("production").status_code == 200
        until(lambda: state_of(a) == "production")


def test_redis_stopped_mid_drain_the_switch_completes_when_it_returns() -> None:
    with fleet_of("A", "B", SERVERMODE_DRAIN_TIMEOUT="20") as (redis, fleet):
        a, b = fleet["A"], fleet["B"]
        slow = Background(lambda: b.get(f"{PROFILE}?delay=1"))
        until(lambda: b.status()["in_flight"].get("profile") == 1)
        switch = Background(lambda: a.switch("maintenance"))
        until(lambda: state_of(b) == "draining_to_maintenance")
        redis.stop()
        slow.join()
        time.sleep(0.5)
        for instance in fleet.values():  # drained, but nobody may leave the drain alone
            assert state_of(instance) == "draining_to_maintenance"
            assert instance.post(SCHEMA_WRITE).status_code == 503
        redis.start()  # empty: the drain is written back, reported again, and completed
        answer = switch.join()
        assert answer.status_code == 200, answer.text
        until(lambda: state_of(b) == "maintenance")


def test_a_new_instance_started_during_maintenance_refuses_its_first_request() -> None:
    with fleet_of("A") as (redis, fleet):
        assert fleet["A"].switch("maintenance").status_code == 200
        late = add_instance(redis, fleet, "Z", SERVERMODE_INITIAL_MODE="production")
        assert late.get(f"{PROFILE}?delay=0").status_code == 503
        assert late.post(SCHEMA_WRITE).status_code == 200
        assert state_of(late) == "maintenance"


def test_an_instance_that_cannot_reach_redis_does_not_start() -> None:
    with fleet_of("A") as (redis, fleet):
        redis.stop()
        directory = fleet["A"].output.parent
        lonely = fleet["Y"] = Instance("Y", redis, directory).start()
        assert lonely.process is not None
        assert lonely.process.wait(20) != 0
        assert "fleet engine is unreachable" in lonely.log()
        try:
            httpx2.get(lonely.url + "/server/health/live", timeout=1)
            raise AssertionError("it serves")
        except httpx2.TransportError:
            pass


def test_load_through_every_instance_while_the_fleet_flips() -> None:
    """No request runs (as the app observes it) in a state that refuses its category, and
    every switch that answered 200 has exactly one fleet record (longer: make soak)."""
    flip_under_load(names="ABC", flips=6, clients=6)


def test_a_cancel_on_another_instance_ends_the_fleet_switch() -> None:
    with fleet_of("A", "B", SERVERMODE_DRAIN_TIMEOUT="20") as (_, fleet):
        a, b = fleet["A"], fleet["B"]
        Background(lambda: b.get(f"{PROFILE}?delay=30"))  # would hold the barrier 20 s
        until(lambda: b.status()["in_flight"].get("profile") == 1)
        switch = Background(lambda: a.switch("maintenance"))
        until(lambda: state_of(b) == "draining_to_maintenance")
        cancelled = b.post("/server/cancel", json={"reason": "wrong day"})
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["outcome"] == "cancelled"
        answer = switch.join()
        assert answer.status_code == 503 and answer.json()["code"] == 5032
        assert {state_of(i) for i in fleet.values()} == {"production"}
        (record, *_) = fleet_records(a)
        assert (record["outcome"], record["completed_by"]) == ("cancelled", "B")


def test_serve_with_four_workers_a_switch_reaches_every_worker() -> None:
    with fleet_of("W", SERVERMODE_WORKERS="4") as (_, fleet):
        w = fleet["W"]

        def workers() -> list[dict[str, Any]]:
            instances: list[dict[str, Any]] = w.fleet()["fleet"]["instances"]
            return instances

        until(lambda: len(workers()) == 4, what="four workers in the fleet", timeout=15)
        assert all(i["instance"].startswith("W:") for i in workers())
        assert w.switch("maintenance").status_code == 200
        until(lambda: {i["state"] for i in workers()} == {"maintenance"}, timeout=5)
        (record, *_) = fleet_records(w)
        assert record["outcome"] == "completed" and len(record["instances"]) == 4
        # New connections land on any worker: every one refuses a profile request.
        for _ in range(12):
            with httpx2.Client(timeout=5) as client:
                assert client.get(f"{w.url}{PROFILE}?delay=0").status_code == 503


def test_one_instance_out_while_the_fleet_stays_in_production() -> None:
    with fleet_of("A", "B", "C") as (_, fleet):
        a, b, c = fleet["A"], fleet["B"], fleet["C"]
        out = a.post("/server/mode", json={"mode": "maintenance", "instance": "B"})
        assert out.status_code == 200, out.text
        assert out.json() == {"server changed": "maintenance"}
        assert b.get(f"{PROFILE}?delay=0").status_code == 503
        assert b.post(SCHEMA_WRITE).status_code == 200
        for instance in (a, c):
            assert instance.get(f"{PROFILE}?delay=0").status_code == 200
        view = c.status()["fleet"]
        assert view["state"] == "production"
        assert {i["instance"]: i["out"] for i in view["instances"]} == {
            "A": None,
            "B": "maintenance",
            "C": None,
        }
        unknown = a.post("/server/mode", json={"mode": "maintenance", "instance": "Z"})
        assert unknown.status_code == 409 and unknown.json()["code"] == 4091
        back = c.post("/server/mode", json={"mode": "production", "instance": "B"})
        assert back.status_code == 200, back.text
        assert b.get(f"{PROFILE}?delay=0").status_code == 200


def fleet_metrics(instance: Instance) -> dict[str, float]:
    """servermode_fleet_* samples of the instance's /server/metrics, by name and state."""
    from prometheus_client.parser import text_string_to_metric_families

    answer = instance.get("/server/metrics")
    assert answer.status_code == 200
    return {
        f"{sample.name}{sample.labels.get('state', '')}": sample.value
        for family in text_string_to_metric_families(answer.text)
        if family.name.startswith("servermode_fleet")
        for sample in family.samples
    }


def test_fleet_metrics_count_the_instances_per_state_and_the_connection() -> None:
    """servermode_fleet_instances{state} and servermode_fleet_connected move with the fleet."""
    with fleet_of("A", "B") as (redis, fleet):
        a = fleet["A"]
        until(lambda: fleet_metrics(a).get("servermode_fleet_instancesproduction") == 2)
        assert fleet_metrics(a)["servermode_fleet_connected"] == 1
        assert fleet_metrics(a)["servermode_fleet_instancesmaintenance"] == 0
        assert a.switch("maintenance").status_code == 200
        until(lambda: fleet_metrics(a).get("servermode_fleet_instancesmaintenance") == 2)
        redis.stop()
        until(lambda: fleet_metrics(a)["servermode_fleet_connected"] == 0, what="Redis lost")
