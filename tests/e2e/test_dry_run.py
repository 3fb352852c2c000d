"""Issue 12 item 6: a dry run tells what a switch would do now and changes nothing."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from ..adapters.helpers import assert_documented
from .servers import ThreadedService

pytestmark = pytest.mark.timeout(30)


def test_a_dry_run_tells_the_drain_and_changes_nothing() -> None:
    with ThreadedService(drain_timeout=5) as running, ThreadPoolExecutor(4) as pool:
        client = running.client()
        for _ in range(5):
            assert client.get("/services/1", params={"delay": 0}).status_code == 200
        assert client.post("/metadata/profiles/extensions?delay=0").status_code == 503
        slow = [pool.submit(client.get, f"/profiles/{n}", params={"delay": 1.0}) for n in (1, 2)]
        reader = pool.submit(client.get, "/metadata/profiles/extensions", params={"delay": 1.0})
        deadline = time.monotonic() + 5
        while client.get("/server/status").json()["in_flight"]["profile"] < 2:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        history = client.get("/server/transitions").json()["transitions"]
        answer = client.post("/server/mode", json={"mode": "Maintenance", "dry_run": True})
        status = client.get("/server/status").json()
        after = client.get("/server/transitions").json()["transitions"]
        profile = client.get("/profiles/9", params={"delay": 0})
        assert all(f.result().status_code == 200 for f in [*slow, reader])

    assert answer.status_code == 200
    plan = assert_documented(answer, "/server/mode", "POST")["dry_run"]
    assert plan["state"] == "production"
    assert plan["target"] == "maintenance"
    assert plan["would"] == "switch"
    # It would wait for the two profile reads, not for the metadata read (maintenance admits it).
    assert plan["wait_for"] == {"profile": 2, "service": 0}
    assert plan["refused_while_draining"] == ["profile", "service", "schema", "schema_read"]
    assert plan["refused_after"] == ["profile", "service"]
    assert plan["request_rates"]["service"] > 0
    assert plan["request_rates"]["schema"] > 0  # refused requests arrive too
    assert plan["rate_window_s"] > 0
    assert plan["drain_timeout"] == 5
    # Nothing changed: the mode, the history, and the next profile request is served.
    assert status["mode"] == "production"
    assert status["state"] == "production"
    assert after == history
    assert profile.status_code == 200


def test_a_dry_run_of_the_mode_in_force_is_a_noop() -> None:
    with ThreadedService() as running:
        answer = running.client().post("/server/mode", json={"mode": "production", "dry_run": True})
    assert answer.json()["dry_run"]["would"] == "noop"
    assert answer.json()["dry_run"]["wait_for"] == {}


def test_a_bad_dry_run_is_400() -> None:
    with ThreadedService() as running:
        client = running.client()
        answer = client.post("/server/mode", json={"mode": "maintenance", "dry_run": "yes"})
        mode = client.get("/server/status").json()["mode"]
    assert answer.status_code == 400
    assert answer.json()["code"] == 4020
    assert "dry_run" in answer.json()["description"]
    assert mode == "production"
