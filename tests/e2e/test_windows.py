"""Issue 12 item 3: timed maintenance windows that end, and begin, by themselves."""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest

from ..adapters.helpers import assert_documented
from .servers import ThreadedService, cli, free_port, running_process

pytestmark = pytest.mark.timeout(30)


def wait_for(client: httpx2.Client, mode: str, within: float) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        status: dict[str, Any] = client.get("/server/status").json()
        if status["mode"] == mode and status["state"] == mode:
            return status
        assert time.monotonic() < deadline, status
        time.sleep(0.05)


def newest(client: httpx2.Client) -> dict[str, Any]:
    record: dict[str, Any] = client.get("/server/transitions?limit=1").json()["transitions"][0]
    return record


def test_a_two_second_window_ends_by_itself() -> None:
    with ThreadedService(retry_after=600) as running:
        client = running.client()
        answer = client.post(
            "/server/mode", json={"mode": "maintenance", "until": "2s", "reason": "upgrade"}
        )
        asked = time.monotonic()
        status = assert_documented(client.get("/server/status"), "/server/status", "GET")
        read_at = datetime.now(UTC)
        refused = client.get("/profiles/1?delay=0")
        page = client.get("/profiles/1?delay=0", headers={"Accept": "text/html"})
        after = wait_for(client, "production", within=5)
        ended = time.monotonic() - asked
        record = newest(client)
        served = client.get("/profiles/1?delay=0")
    assert answer.status_code == 200
    assert answer.json() == {"server changed": "maintenance"}
    assert status["mode"] == "maintenance"
    assert status["window"]["start_at"] is None
    assert status["window"]["reason"] == "upgrade"
    until = datetime.fromisoformat(status["window"]["until"].replace("Z", "+00:00"))
    assert timedelta(seconds=1) < until - read_at <= timedelta(seconds=2)
    # Retry-After counts down to the end of the window, not the configured 600 s.
    assert refused.status_code == 503
    assert 1 <= int(refused.headers["retry-after"]) <= 2
    assert "The maintenance window ends at" in page.text
    assert 1.5 <= ended < 5
    assert "window" not in after
    assert record["actor"] == "schedule"
    assert record["outcome"] == "completed"
    assert (record["from_state"], record["to_state"]) == ("maintenance", "production")
    assert served.status_code == 200


def test_a_window_begins_by_itself_then_ends() -> None:
    with ThreadedService() as running:
        client = running.client()
        answer = client.post(
            "/server/mode",
            json={"mode": "maintenance", "start_at": "1s", "until": "2s", "reason": "disks"},
        )
        asked = time.monotonic()
        before = client.get("/server/status").json()
        during = wait_for(client, "maintenance", within=5)
        began = time.monotonic() - asked
        began_record = newest(client)
        wait_for(client, "production", within=5)
        ended = time.monotonic() - asked
        history = client.get("/server/transitions?limit=3").json()["transitions"]
    body = assert_documented(answer, "/server/mode", "POST")
    assert answer.status_code == 202
    assert answer.headers["servermode-outcome"] == "scheduled"
    assert body["server scheduled"]["start_at"] is not None
    assert before["mode"] == "production"
    assert before["window"]["start_at"] == body["server scheduled"]["start_at"]
    assert 0.8 <= began < 3
    assert during["window"]["start_at"] is None  # begun
    assert during["reason"] == "disks"
    assert (began_record["actor"], began_record["outcome"]) == ("schedule", "completed")
    assert began_record["to_state"] == "maintenance"
    assert 2.5 <= ended < 6
    assert [r["outcome"] for r in history] == ["completed", "completed", "scheduled"]
    assert history[0]["to_state"] == "production"


def test_a_window_survives_a_restart_and_a_restart_after_its_end_comes_up_in_production(
    tmp_path: Path,
) -> None:
    state = str(tmp_path / "servermode.db")
    with ThreadedService(state=state) as running:
        client = running.client()
        assert (
            client.post("/server/mode", json={"mode": "maintenance", "until": "1s"}).status_code
            == 200
        )
        client.post("/server/mode", json={"mode": "maintenance", "until": "1s"})
        running.server.should_exit = True  # stop before the window ends
    time.sleep(1.2)
    with ThreadedService(state=state) as running:
        client = running.client()
        status = client.get("/server/status").json()  # the very first answer
        record = newest(client)
    assert status["mode"] == "production"
    assert "window" not in status
    assert record["actor"] == "schedule"

    with ThreadedService(state=state) as running:
        client = running.client()
        assert (
            client.post(
                "/server/mode", json={"mode": "maintenance", "start_at": "30m", "until": "1h"}
            ).status_code
            == 202
        )
    with ThreadedService(state=state) as running:
        status = running.client().get("/server/status").json()
    assert status["mode"] == "production"
    start = datetime.fromisoformat(status["window"]["start_at"].replace("Z", "+00:00"))
    until = datetime.fromisoformat(status["window"]["until"].replace("Z", "+00:00"))
    assert until - start == timedelta(hours=1)  # a duration counts from the window's start


def test_a_manual_switch_ends_the_window() -> None:
    with ThreadedService() as running:
        client = running.client()
        client.post("/server/mode", json={"mode": "maintenance", "until": "30m"})
        with_window = client.get("/server/status").json()
        client.post("/server/mode", json={"mode": "production"})
        client.post("/server/mode", json={"mode": "maintenance", "start_at": "30m"})
        scheduled = client.get("/server/status").json()
        client.post("/server/mode", json={"mode": "production"})  # a noop that ends it
        after = client.get("/server/status").json()
    assert "window" in with_window
    assert scheduled["window"]["start_at"] is not None
    assert "window" not in after


def test_a_cancel_ends_the_window() -> None:
    """POST /server/cancel ends a window ahead (nothing moves) and one under way (it stays)."""
    with ThreadedService() as running:
        client = running.client()
        client.post("/server/mode", json={"mode": "maintenance", "start_at": "30m"})
        ahead = client.post("/server/cancel", json={"reason": "not tonight"})
        after_ahead = client.get("/server/status").json()
        client.post("/server/mode", json={"mode": "maintenance", "until": "30m"})
        under_way = client.post("/server/cancel")
        after = client.get("/server/status").json()
        nothing = client.post("/server/cancel")
    assert ahead.status_code == 200
    record = ahead.json()
    assert (record["outcome"], record["from_state"], record["to_state"]) == (
        "cancelled",
        "production",
        "production",
    )
    assert record["reason"] == "not tonight"
    assert "window" not in after_ahead and after_ahead["mode"] == "production"
    assert under_way.status_code == 200
    assert after["mode"] == "maintenance" and "window" not in after  # no end any more
    assert nothing.status_code == 409


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"until": "2000-01-01T00:00:00Z"}, "bad until: 2000-01-01T00:00:00Z is in the past"),
        ({"start_at": "2001-01-01T00:00:00+02:00"}, "bad start_at: 2000-12-31T22:00:00Z is in"),
        (
            {"start_at": "2h", "until": (datetime.now(UTC) + timedelta(hours=1)).isoformat()},
            "is not after the start",
        ),
        ({"until": "999999d"}, "more than 366 days"),
        ({"until": "2030-01-01T00:00:00"}, "is neither an RFC 3339 time with a zone"),
        ({"until": "2030-02-30T00:00:00Z"}, "is not a valid time"),
        ({"until": "soon"}, "'soon' is neither an RFC 3339 time"),
        ({"until": 30}, "int is neither"),
        ({"until": "0s"}, "is in the past"),
        ({"mode": "production", "until": "30m"}, "a window is a period of maintenance"),
    ],
)
def test_bad_windows_are_400(body: dict[str, Any], says: str) -> None:
    with ThreadedService() as running:
        client = running.client()
        answer = client.post("/server/mode", json={"mode": "maintenance", **body})
        status = client.get("/server/status").json()
    assert answer.status_code == 400
    error = assert_documented(answer, "/server/mode", "POST")
    assert error["code"] == 4020
    assert error["title"] == "bad parameter"
    assert says in error["description"]
    assert status["mode"] == "production"
    assert "window" not in status


def test_the_cli_sets_and_schedules_windows() -> None:
    port = free_port()
    argv = [sys.executable, "-m", "servermode.adapters.cli", "serve", "--port", str(port)]
    with running_process(argv, port) as url:
        env = {"SERVERMODE_URL": url}
        now = cli("set", "maintenance", "--until", "30m", env=env)
        later = cli("set", "maintenance", "--at", "1h", "--until", "2h", env=env)
        bad = cli("set", "maintenance", "--until", "yesterday", env=env)
        status = httpx2.get(f"{url}/server/status").json()
    assert now.returncode == 0, now.stderr
    assert now.stdout.strip() == "server changed: maintenance (completed)"
    assert later.returncode == 0, later.stderr
    assert later.stdout.startswith("server scheduled: maintenance from ")
    assert " until " in later.stdout
    assert bad.returncode != 0
    assert "400 bad parameter: bad until: 'yesterday'" in bad.stderr
    assert status["window"]["start_at"] is not None
