"""Issue 12 item 4: lame duck: readiness fails at once, requests are still admitted for a while."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from ..adapters.helpers import assert_documented
from .servers import ThreadedService

pytestmark = pytest.mark.timeout(30)


def test_readiness_fails_while_requests_are_still_admitted() -> None:
    with ThreadedService(lame_duck=1.0, drain_timeout=5) as running, ThreadPoolExecutor(2) as pool:
        client = running.client()
        before = client.get("/server/health/ready")
        asked = time.monotonic()
        switch = pool.submit(client.post, "/server/mode", json={"mode": "maintenance"})
        time.sleep(0.3)
        ready = client.get("/server/health/ready")
        served = client.get("/profiles/1?delay=0")
        status = client.get("/server/status")
        deadline = time.monotonic() + 5
        while client.get("/profiles/2?delay=0").status_code == 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        refused_after = time.monotonic() - asked
        switched = switch.result()
        record = client.get("/server/transitions?limit=1").json()["transitions"][0]
        after = client.get("/server/status").json()

    assert before.status_code == 200
    assert ready.status_code == 503
    assert ready.json()["status"] == "not ready"
    assert ready.json()["state"] == "production"
    assert served.status_code == 200  # still admitted
    document = assert_documented(status, "/server/status", "GET")
    assert document["state"] == "production"
    assert document["lame_duck"] == 1.0
    assert "lame_duck_until" in document
    assert refused_after >= 0.9  # the gate refused only once the lame duck was over
    assert switched.status_code == 200
    assert record["outcome"] == "completed"
    assert record["lame_duck"] == 1.0
    assert after["mode"] == "maintenance"
    assert "lame_duck_until" not in after


def test_no_lame_duck_back_to_production_nor_by_default() -> None:
    with ThreadedService(lame_duck=5.0) as running:
        client = running.client()
        client.post("/server/mode", json={"mode": "maintenance", "dry_run": True})
        plan = client.post("/server/mode", json={"mode": "maintenance", "dry_run": True}).json()
        back = client.post("/server/mode", json={"mode": "production", "dry_run": True}).json()
    assert plan["dry_run"]["lame_duck"] == 5.0
    assert back["dry_run"]["would"] == "noop"
    with ThreadedService() as running:
        client = running.client()
        started = time.monotonic()
        assert client.post("/server/mode", json={"mode": "maintenance"}).status_code == 200
        assert time.monotonic() - started < 1
        record = client.get("/server/transitions?limit=1").json()["transitions"][0]
        assert record["lame_duck"] == 0.0
