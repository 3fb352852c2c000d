"""Issue 12 in fleet mode, end to end: a maintenance window and the lame duck are the fleet's;
dry runs and webhooks see the fleet.
Real `servermode serve --fleet` processes on a real redis-server of the test's own."""

from __future__ import annotations

import json
import time

from tests.adapters.helpers import assert_documented

from .fleet import Background, Instance, add_instance, fleet_of, until
from .test_fleet import PROFILE, fleet_records, state_of
from .test_webhooks import SECRET, Receiver, verified


def mode(instance: Instance) -> str:
    return str(instance.status()["mode"])


def test_a_two_second_window_asked_of_one_instance_ends_by_itself_on_every_instance() -> None:
    with fleet_of("A", "B") as (_, fleet):
        a, b = fleet["A"], fleet["B"]
        one = a.post("/server/mode", json={"mode": "maintenance", "until": "2s", "instance": "B"})
        assert one.status_code == 400 and one.json()["code"] == 4020, one.text
        assert "the fleet's" in one.json()["description"] and state_of(b) == "production"
        asked = a.post(
            "/server/mode", json={"mode": "maintenance", "until": "2s", "reason": "disk swap"}
        )
        assert asked.status_code == 200, asked.text
        began = time.monotonic()
        until(lambda: state_of(b) == "maintenance", what="B in maintenance")
        page = b.get(f"{PROFILE}?delay=0", headers={"Accept": "text/html"})
        assert page.status_code == 503  # B's page tells the fleet's reason and window's end
        assert "disk swap" in page.text and "The maintenance window ends at" in page.text
        status = b.status()
        assert status["window"]["until"] is not None
        assert_documented(b.get("/server/status"), "/server/status", "GET")
        refused = b.get(f"{PROFILE}?delay=0")
        assert refused.status_code == 503
        assert 1 <= int(refused.headers["Retry-After"]) <= 2  # counts down to the window's end
        until(lambda: all(mode(i) == "production" for i in fleet.values()), timeout=8)
        assert time.monotonic() - began >= 1.5  # not before its end
        assert b.get(f"{PROFILE}?delay=0").status_code == 200
        assert "window" not in b.status()
        scheduled = [r for r in fleet_records(b) if r["actor"] == "schedule"]
        assert [(r["outcome"], r["to_state"]) for r in scheduled] == [("completed", "production")]


def test_a_window_ahead_begins_by_itself_and_a_new_instance_knows_it() -> None:
    with fleet_of("A", "B") as (redis, fleet):
        a, b = fleet["A"], fleet["B"]
        asked = a.post(
            "/server/mode", json={"mode": "maintenance", "start_at": "3s", "until": "1h"}
        )
        assert asked.status_code == 202, asked.text
        assert asked.json()["server scheduled"]["start_at"] is not None
        assert mode(b) == "production"
        assert b.status()["window"]["start_at"] is not None  # every instance knows it
        c = add_instance(redis, fleet, "C")  # joins before it begins
        until(lambda: all(mode(i) == "maintenance" for i in fleet.values()), timeout=10)
        assert c.get(f"{PROFILE}?delay=0").status_code == 503
        (begun, *_) = fleet_records(c)
        assert (begun["outcome"], begun["actor"]) == ("completed", "schedule")
        # A cancel on any instance ends the window everywhere: no switch back at its end.
        cancelled = c.post("/server/cancel")
        assert cancelled.status_code == 200, cancelled.text
        until(lambda: all("window" not in i.status() for i in fleet.values()))
        assert all(mode(i) == "maintenance" for i in fleet.values())


def test_the_lame_duck_fails_readiness_on_every_instance_while_they_still_admit() -> None:
    with fleet_of("A", "B", SERVERMODE_LAME_DUCK="2", SERVERMODE_DRAIN_TIMEOUT="5") as (
        _,
        fleet,
    ):
        a, b = fleet["A"], fleet["B"]
        assert b.get("/server/health/ready").status_code == 200
        switch = Background(lambda: a.switch("maintenance"))
        until(lambda: b.get("/server/health/ready").status_code == 503, what="B not ready")
        lame = b.status()
        assert lame["state"] == "production" and "lame_duck_until" in lame
        assert_documented(b.get("/server/status"), "/server/status", "GET")
        assert b.get(f"{PROFILE}?delay=0").status_code == 200  # still admitted
        assert a.get(f"{PROFILE}?delay=0").status_code == 200
        answer = switch.join()
        assert answer.status_code == 200, answer.text
        until(lambda: b.get(f"{PROFILE}?delay=0").status_code == 503)
        until(lambda: mode(b) == "maintenance")
        (record, *_) = b.get("/server/transitions?limit=1").json()["transitions"]
        assert record["lame_duck"] == 2.0 and record["outcome"] == "completed"


def test_a_dry_run_on_one_instance_counts_the_requests_in_flight_on_the_others() -> None:
    with fleet_of("A", "B") as (_, fleet):
        a, b = fleet["A"], fleet["B"]
        slow = Background(lambda: b.get(f"{PROFILE}?delay=3"))
        until(lambda: b.status()["in_flight"].get("profile") == 1, what="B's slow request")
        until(lambda: b.status()["fleet"]["instances"][1]["in_flight"].get("profile") == 1)
        answer = a.post("/server/mode", json={"mode": "maintenance", "dry_run": True})
        assert answer.status_code == 200, answer.text
        plan = answer.json()["dry_run"]
        assert plan["wait_for"]["profile"] == 1  # B's, seen from A (A runs none)
        assert all(mode(i) == "production" for i in fleet.values())
        assert slow.join().status_code == 200


def test_each_instance_sends_its_record_of_a_fleet_switch_to_the_webhook() -> None:
    with (
        Receiver().running() as receiver,
        fleet_of("A", "B", SERVERMODE_WEBHOOKS=receiver.url, SERVERMODE_WEBHOOK_SECRET=SECRET) as (
            _,
            fleet,
        ),
    ):
        assert fleet["A"].switch("maintenance").status_code == 200
        receiver.wait_for(2)
        by_instance = {headers["Servermode-Instance"]: body for headers, body in receiver.received}
        assert sorted(by_instance) == ["A", "B"]
        assert all(verified(h, b) for h, b in receiver.received)
        epochs = {json.loads(body)["fleet"]["epoch"] for body in by_instance.values()}
        assert len(epochs) == 1  # one fleet switch, told by each instance
