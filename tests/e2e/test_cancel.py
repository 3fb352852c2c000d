"""POST /server/cancel against a real uvicorn: a drain abandoned, the old mode kept, audited."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from .servers import ThreadedService

pytestmark = pytest.mark.timeout(30)

ADMIN, READ = "cancel-admin-token", "cancel-read-token"


def auth(token: str = ADMIN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_cancel_abandons_the_drain_and_answers_its_record() -> None:
    """The switch's caller gets 503 (5032), the canceller the record; production stays."""
    with (
        ThreadedService(drain_timeout=10, admin_token=ADMIN, read_token=READ) as running,
        ThreadPoolExecutor(2) as pool,
    ):
        client = running.client()
        slow = pool.submit(client.get, "/profiles/1", params={"delay": 2})
        time.sleep(0.2)
        switch = pool.submit(
            client.post, "/server/mode", json={"mode": "maintenance"}, headers=auth()
        )
        time.sleep(0.3)
        read_only = client.post("/server/cancel", headers=auth(READ))
        started = time.monotonic()
        cancelled = client.post("/server/cancel", json={"reason": "wrong window"}, headers=auth())
        took = time.monotonic() - started
        switched = switch.result()
        status = client.get("/server/status", headers=auth()).json()
        history = client.get("/server/transitions?limit=1", headers=auth()).json()
        assert slow.result().status_code == 200  # the running request was never touched
    assert read_only.status_code == 403
    assert cancelled.status_code == 200
    assert took < 1.0  # at once, not when the slow request ends
    record = cancelled.json()
    assert record["outcome"] == "cancelled"
    assert record["to_state"] == "production"
    assert record["actor"] == "admin"
    assert record["reason"] == "wrong window"
    assert record["stragglers"] == {"profile": 1}
    assert cancelled.headers["servermode-outcome"] == "cancelled"
    assert switched.status_code == 503
    assert switched.json()["code"] == 5032
    assert status["mode"] == status["state"] == "production"
    assert history["transitions"][0]["id"] == record["id"]


def test_nothing_to_cancel_is_a_409() -> None:
    with ThreadedService() as running:
        response = running.client().post("/server/cancel")
    assert response.status_code == 409
    body = response.json()
    assert body["code"] == 4090
    assert body["title"] == "nothing to cancel"
    assert body["description"] == "no mode change is under way: the server is in production mode"
