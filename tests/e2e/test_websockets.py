"""WebSockets through the gate, against a real uvicorn and the `websockets` package's client.

The demo serves two echo sockets: ``/profiles/{id}/echo`` (profile: production only) and
``/metadata/profiles/echo`` (schema_read: both modes).
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from .servers import ThreadedService, free_port, running_process

pytestmark = pytest.mark.timeout(30)


def open_socket(service: ThreadedService, path: str) -> Any:
    """A context manager: the client connection to ``path`` of ``service``."""
    url = service.url.replace("http://", "ws://") + path
    return connect(url, proxy=None, open_timeout=5, close_timeout=2)


def echo(socket: ClientConnection, text: str) -> dict[str, Any]:
    socket.send(text)
    answer: dict[str, Any] = json.loads(socket.recv(timeout=5))
    return answer


def last_record(service: ThreadedService) -> dict[str, Any]:
    record: dict[str, Any] = (
        service.client().get("/server/transitions?limit=1").json()["transitions"][0]
    )
    return record


@pytest.mark.parametrize("ws", ["wsproto", "websockets-sansio"])
def test_a_refused_handshake_gets_503_retry_after_and_the_error_body(
    ws: str, caplog: pytest.LogCaptureFixture
) -> None:
    """In maintenance, a profile socket's handshake is answered 503 (not uvicorn's 403).

    On both of uvicorn's implementations that offer the denial response; wsproto (what
    ``servermode serve`` runs) without an error in the log (websockets-sansio logs one,
    "ASGI callable returned without completing handshake", uvicorn's own doing).
    """
    with ThreadedService(ws=ws, initial_mode="maintenance", retry_after=42) as running:
        with pytest.raises(InvalidStatus) as refused, open_socket(running, "/profiles/1/echo"):
            pass
        status = running.client().get("/server/status").json()
    response = refused.value.response
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "42"
    assert response.headers["Content-Type"] == "application/json"
    error = json.loads(response.body)
    assert error == {
        "http_method": "GET",
        "title": "service unavailable",
        "description": "the operation is unavailable while the server is in maintenance mode "
        "(profile request)",
        "code": 5030,
        "uri": f"{running.url.replace('http://', 'ws://')}/profiles/1/echo",
    }
    assert status["server_errors_today"] == 1
    if ws == "wsproto":
        assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


def test_a_socket_the_target_refuses_is_closed_when_the_drain_begins() -> None:
    """An open profile socket is closed with 1012; the switch completes at once, counting it."""
    with (
        ThreadedService(drain_timeout=10) as running,
        open_socket(running, "/profiles/1/echo") as socket,
    ):
        assert echo(socket, "hello") == {
            "category": "profile",
            "echo": "hello",
            "state": "production",
        }
        started = time.monotonic()
        switch = running.client().post("/server/mode", json={"mode": "maintenance"})
        took = time.monotonic() - started
        with pytest.raises(ConnectionClosed) as closed:
            socket.recv(timeout=5)
        record = last_record(running)
        status = running.client().get("/server/status").json()
    assert switch.status_code == 200
    assert took < 2  # not the 10 s drain timeout
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1012
    assert record["outcome"] == "completed"
    assert record["closed"] == {"profile": 1}
    assert record["in_flight"]["profile"] == 1
    assert status["in_flight"]["profile"] == 0


def test_a_socket_the_target_admits_stays_open() -> None:
    """A metadata-read socket (both modes admit it) keeps serving across the switch, and the
    drain does not wait for it: under rollback the switch completes instead of rolling back."""
    with (
        ThreadedService(drain_timeout=5, timeout_policy="rollback") as running,
        open_socket(running, "/metadata/profiles/echo") as socket,
        ThreadPoolExecutor(1) as pool,
    ):
        assert echo(socket, "before")["state"] == "production"
        switch = pool.submit(running.client().post, "/server/mode", json={"mode": "maintenance"})
        assert switch.result().status_code == 200
        after = echo(socket, "after")
        record = last_record(running)
    assert after == {"category": "schema_read", "echo": "after", "state": "maintenance"}
    assert record["to_state"] == "maintenance"
    assert record["outcome"] == "completed"
    assert record["duration_ms"] < 2000  # not the 5 s drain timeout
    assert record["closed"] == {}


def test_servermode_serve_serves_websockets_as_installed() -> None:
    """``servermode serve`` upgrades a WebSocket with what the package installs."""
    port = free_port()
    argv = [sys.executable, "-m", "servermode.adapters.cli", "serve", "--port", str(port)]
    with running_process(argv, port) as url:
        url = url.replace("http://", "ws://")
        with connect(f"{url}/profiles/7/echo", proxy=None, open_timeout=5) as socket:
            socket.send("ping")
            answer = json.loads(socket.recv(timeout=5))
    assert answer == {"category": "profile", "echo": "ping", "state": "production"}


def test_the_websocket_library_serve_runs_is_a_dependency() -> None:
    """uvicorn upgrades no WebSocket without a library: the package itself requires wsproto."""
    required = [
        entry.split(";")[0].strip()
        for entry in importlib.metadata.requires("servermode") or []
        if "extra ==" not in entry
    ]
    assert any(entry.startswith("wsproto") for entry in required), required
