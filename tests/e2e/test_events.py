"""GET /server/events against a real uvicorn: snapshots, records, drains, tokens, the end."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import pytest

from .servers import ThreadedService
from .sse import EventReader

pytestmark = pytest.mark.timeout(30)

ADMIN, READ = "events-admin-token", "events-read-token"


@contextmanager
def streaming(running: ThreadedService, token: str | None = ADMIN) -> Iterator[EventReader]:
    """A stream of ``running``, ended by the service at the end (as a stop does)."""
    reader = EventReader(f"{running.url}/server/events", token)
    try:
        yield reader
    finally:
        running.service.monitor.close()
        reader.join()


def auth(token: str = ADMIN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def draining(data: dict[str, Any]) -> bool:
    return bool(data["state"] == "draining_to_maintenance")


class TestStream:
    def test_hello_status_and_a_switch_made_by_another_client(self) -> None:
        """The stream starts with hello and the status; another client's switch arrives fast."""
        with ThreadedService(admin_token=ADMIN) as running, streaming(running) as events:
            assert events.content_type.startswith("text/event-stream")
            hello = events.next("hello")
            first = events.next("status")
            sent = time.monotonic()
            response = running.client().post(
                "/server/mode", json={"mode": "maintenance", "reason": "by curl"}, headers=auth()
            )
            record = events.next("transition", timeout=1)
            arrived = time.monotonic() - sent
            after = events.next("status", timeout=1)
        assert hello == {"principal": "admin", "can_switch": True, "switch": None}
        assert first["mode"] == "production"
        assert response.status_code == 200
        assert arrived < 1.0
        assert record["outcome"] == "completed"
        assert record["reason"] == "by curl"
        assert record["actor"] == "admin"
        assert isinstance(record["id"], int)
        assert after["mode"] == after["state"] == "maintenance"

    def test_drain_progress_streams_and_the_stream_never_holds_the_drain(self) -> None:
        """While a slow request drains, statuses come every half second; the stream is uncounted."""
        with (
            ThreadedService(drain_timeout=5) as running,
            streaming(running) as events,
            ThreadPoolExecutor(2) as pool,
        ):
            events.next("status")
            client = running.client()
            slow = pool.submit(client.get, "/profiles/1", params={"delay": 1.2})
            time.sleep(0.2)
            switch = pool.submit(client.post, "/server/mode", json={"mode": "maintenance"})
            progress = [events.next("status", draining, timeout=1)]
            progress.append(events.next("status", draining, timeout=1))
            record = events.next("transition", timeout=3)
            assert slow.result().status_code == 200
            assert switch.result().status_code == 200
        assert progress[0]["in_flight"]["profile"] == 1
        assert progress[0]["target"] == "maintenance"
        assert progress[0]["deadline"] == progress[1]["deadline"]
        assert progress[0]["system_time"] < progress[1]["system_time"]
        # It waited for the slow read (about 1 s), not for the open stream.
        assert record["outcome"] == "completed"
        assert record["in_flight"] == {"profile": 1, "service": 0, "schema": 0, "schema_read": 0}
        assert record["duration_ms"] < 3000

    def test_a_stream_alone_does_not_hold_a_drain(self) -> None:
        with ThreadedService(drain_timeout=5) as running, streaming(running) as events:
            events.next("status")
            started = time.monotonic()
            response = running.client().post("/server/mode", json={"mode": "maintenance"})
            took = time.monotonic() - started
        assert response.headers["servermode-outcome"] == "completed"
        assert took < 1.0

    def test_a_refused_attempt_reaches_the_stream(self) -> None:
        """Every attempt is emitted: a switch asked during a drain is refused, and streamed."""
        with (
            ThreadedService(drain_timeout=5) as running,
            streaming(running) as events,
            ThreadPoolExecutor(2) as pool,
        ):
            client = running.client()
            slow = pool.submit(client.get, "/profiles/1", params={"delay": 0.8})
            time.sleep(0.2)
            switch = pool.submit(client.post, "/server/mode", json={"mode": "maintenance"})
            events.next("status", draining)
            refused = client.post("/server/mode", json={"mode": "production"})
            record = events.next("transition", timeout=1)
            metrics = client.get("/server/metrics").text
            slow.result()
            switch.result()
        assert refused.status_code == 503
        assert record["outcome"] == "refused"
        assert (
            'servermode_transitions_total{from_state="draining_to_maintenance",outcome="refused",'
            'to_state="draining_to_maintenance"} 1.0'
        ) in metrics


class TestTokens:
    def test_no_token_is_refused_with_the_error_body(self) -> None:
        with ThreadedService(admin_token=ADMIN, read_token=READ) as running:
            reader = EventReader(f"{running.url}/server/events")
            reader.join()
        assert reader.status_code == 401
        assert b'"code":4010' in reader.body

    @pytest.mark.parametrize(
        ("token", "hello"),
        [
            (READ, {"principal": "reader", "can_switch": False}),
            (ADMIN, {"principal": "admin", "can_switch": True}),
        ],
    )
    def test_hello_says_what_the_token_may_do(self, token: str, hello: dict[str, Any]) -> None:
        with (
            ThreadedService(admin_token=ADMIN, read_token=READ) as running,
            streaming(running, token) as events,
        ):
            said = events.next("hello")
        assert {key: said[key] for key in hello} == hello
        if not hello["can_switch"]:
            assert said["switch"] == "the read token does not allow changing the mode"


class TestEnd:
    def test_closing_the_monitor_ends_every_stream_with_shutdown(self) -> None:
        with ThreadedService() as running:
            first = EventReader(f"{running.url}/server/events")
            second = EventReader(f"{running.url}/server/events")
            first.next("status")
            second.next("status")
            running.service.monitor.close()
            for reader in (first, second):
                assert reader.next("shutdown", timeout=2) == {
                    "description": "the service is stopping"
                }
                reader.next("closed", timeout=2)
                reader.join()
            # A stream opened once the service is stopping ends at once.
            late = EventReader(f"{running.url}/server/events")
            late.next("shutdown", timeout=2)
            late.join()
            assert running.service.monitor.hub.open_streams == 0
