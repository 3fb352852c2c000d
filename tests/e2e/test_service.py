"""The service end to end: real uvicorn on loopback, driven over HTTP."""

from __future__ import annotations

import socket
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from .servers import ThreadedService

pytestmark = pytest.mark.timeout(30)


def timed(call: Any, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    response = call(*args, **kwargs)
    return response, time.monotonic()


class TestDrain:
    def test_switch_waits_for_a_slow_profile_request(self) -> None:
        """The POST waits for the running profile read; meanwhile new requests get 503."""
        with ThreadedService(drain_timeout=5) as running, ThreadPoolExecutor(2) as pool:
            client = running.client()
            sent = time.monotonic()
            slow = pool.submit(timed, client.get, "/profiles/1", params={"delay": 0.8})
            time.sleep(0.2)
            switch = pool.submit(timed, client.post, "/server/mode", json={"mode": "maintenance"})
            time.sleep(0.2)

            during = {
                "profile": client.get("/profiles/2?delay=0"),
                "schema": client.post("/metadata/profiles/extensions?delay=0"),
                "admin": client.post("/server/mode", json={"mode": "production"}),
            }
            status = client.get("/server/status").json()
            assert not switch.done()

            slow_response, _ = slow.result()
            switch_response, switch_done = switch.result()
            after = client.post("/metadata/profiles/extensions?delay=0")

        assert slow_response.status_code == 200
        assert switch_response.status_code == 200
        assert switch_response.content == b'{"server changed":"maintenance"}'
        # Answered only once the drain was complete: after the slow request's 0.8 s.
        assert switch_done - sent >= 0.8
        for name, response in during.items():
            assert response.status_code == 503, name
            assert int(response.headers["retry-after"]) >= 1
            assert "switching from production to maintenance" in response.json()["description"]
        assert status["state"] == "draining_to_maintenance"
        assert status["target"] == "maintenance"
        assert status["in_flight"]["profile"] == 1
        assert after.status_code == 200
        assert after.json()["category"] == "schema"

    def test_force_policy_switches_when_the_drain_times_out(self) -> None:
        """Under force, the switch completes at the deadline; the straggler is recorded."""
        with ThreadedService(drain_timeout=0.3) as running, ThreadPoolExecutor(1) as pool:
            client = running.client()
            slow = pool.submit(client.get, "/profiles/1", params={"delay": 1.0})
            time.sleep(0.2)
            started = time.monotonic()
            response = client.post("/server/mode", json={"mode": "maintenance"})
            waited = time.monotonic() - started
            history = client.get("/server/transitions?limit=1").json()["transitions"]
            assert slow.result().status_code == 200  # the straggler still finished
        assert response.status_code == 200
        assert response.headers["servermode-outcome"] == "forced"
        assert 0.2 <= waited < 0.9
        assert history[0]["outcome"] == "forced"
        assert history[0]["stragglers"] == {"profile": 1}

    def test_rollback_policy_keeps_the_mode(self) -> None:
        """Under rollback, a drain that times out answers 503 and production stays."""
        with ThreadedService(drain_timeout=0.3, timeout_policy="rollback") as running:
            with ThreadPoolExecutor(1) as pool:
                client = running.client()
                slow = pool.submit(client.get, "/profiles/1", params={"delay": 0.8})
                time.sleep(0.2)
                response = client.post("/server/mode", json={"mode": "maintenance"})
                slow.result()
            profile_after = client.get("/profiles/2?delay=0")
            mode = client.get("/server/status").json()["mode"]
        assert response.status_code == 503
        assert response.json()["title"] == "mode not changed"
        assert "did not change" in response.json()["description"]
        assert mode == "production"
        assert profile_after.status_code == 200

    def test_a_drain_does_not_wait_for_a_read_both_modes_admit(self) -> None:
        """A long metadata read (schema_read: admitted in production and in maintenance) is
        not waited for: under rollback with a short drain timeout, both switches complete at
        once, and the read itself finishes normally."""
        with (
            ThreadedService(drain_timeout=1.0, timeout_policy="rollback") as running,
            ThreadPoolExecutor(1) as pool,
        ):
            client = running.client()
            read = pool.submit(client.get, "/metadata/profiles/extensions", params={"delay": 2.0})
            deadline = time.monotonic() + 5
            while client.get("/server/status").json()["in_flight"]["schema_read"] != 1:
                assert time.monotonic() < deadline, "the metadata read was never admitted"
                time.sleep(0.01)
            started = time.monotonic()
            to_maintenance = client.post("/server/mode", json={"mode": "maintenance"})
            to_production = client.post("/server/mode", json={"mode": "production"})
            waited = time.monotonic() - started
            history = client.get("/server/transitions?limit=2").json()["transitions"]
            still_running = client.get("/server/status").json()["in_flight"]["schema_read"]
            read_response = read.result()
        assert to_maintenance.status_code == 200, to_maintenance.text
        assert to_maintenance.content == b'{"server changed":"maintenance"}'
        assert to_production.status_code == 200, to_production.text
        assert waited < 1.0  # neither switch waited for the drain timeout (a wait fails: 503)
        assert still_running == 1
        assert [r["outcome"] for r in history] == ["completed", "completed"]
        assert all(r["in_flight"]["schema_read"] == 1 for r in history)
        assert all(r["stragglers"] == {} for r in history)
        assert read_response.status_code == 200


class TestAuthOverHttp:
    def test_admin_token_guards_the_switch(self) -> None:
        """Without the token 401; with it 200, audited with the principal and client address."""
        with ThreadedService(admin_token="e2e-secret") as running:
            client = running.client()
            refused = client.post("/server/mode", json={"mode": "maintenance"})
            wrong = client.post(
                "/server/mode",
                json={"mode": "maintenance"},
                headers={"Authorization": "Bearer nope"},
            )
            accepted = client.post(
                "/server/mode",
                json={"mode": "maintenance"},
                headers={"Authorization": "Bearer e2e-secret"},
            )
            record = client.get("/server/transitions?limit=1").json()["transitions"][0]
        assert (refused.status_code, wrong.status_code, accepted.status_code) == (401, 401, 200)
        assert record["actor"] == "admin"
        assert record["client"].startswith("127.0.0.1:")


def test_health_probes_follow_the_mode() -> None:
    """Ready is 200 in production, 503 in maintenance; live stays 200."""
    with ThreadedService() as running:
        client = running.client()
        before = client.get("/server/health/ready").status_code
        client.post("/server/mode", json={"mode": "maintenance"})
        after = client.get("/server/health/ready").status_code
        live = client.get("/server/health/live").status_code
    assert (before, after, live) == (200, 503, 200)


def test_a_traversal_path_is_routed_as_classified() -> None:
    """A raw request for /server/../profiles/1 is gated as a profile request, not as server."""
    with ThreadedService() as running:
        running.client().post("/server/mode", json={"mode": "maintenance"})
        host, port = running.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            sock.sendall(
                b"GET /server/../profiles/1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
    assert answer.startswith(b"HTTP/1.1 503 ")
    assert b"maintenance mode (profile request)" in answer
