"""The mode request's small holes, against a real uvicorn (issue 9, item 15)."""

from __future__ import annotations

import logging
import socket
import time

import pytest
from servermode.adapters.bootstrap import build_service
from servermode.adapters.cli.settings import Settings, SettingsError
from servermode.adapters.store.factory import MEMORY

from .servers import ThreadedService

pytestmark = pytest.mark.timeout(30)

MAINTENANCE = b'{"mode": "maintenance"}'


def test_a_mode_request_without_content_type_is_415() -> None:
    """The README promises 415 for a body not declared JSON: a missing header included."""
    with ThreadedService() as running:
        client = running.client()
        answer = client.post("/server/mode", content=MAINTENANCE)
        mode = client.get("/server/status").json()["mode"]
    assert "content-type" not in answer.request.headers
    assert answer.status_code == 415
    assert answer.json()["code"] == 4150
    assert "without Content-Type" in answer.json()["description"]
    assert mode == "production"


@pytest.mark.parametrize("number", ["1e999999", "-1e400", "1.5e309"])
def test_a_number_out_of_range_is_400(number: str) -> None:
    """A number json.loads would read as infinity is refused like NaN, wherever it is."""
    body = f'{{"mode": "maintenance", "extra": {number}}}'.encode()
    with ThreadedService() as running:
        client = running.client()
        answer = client.post(
            "/server/mode", content=body, headers={"Content-Type": "application/json"}
        )
        mode = client.get("/server/status").json()["mode"]
    assert answer.status_code == 400
    assert answer.json()["code"] == 4020
    assert "out of range" in answer.json()["description"]
    assert mode == "production"


def test_a_non_ascii_admin_token_stops_the_start() -> None:
    """A token that could never match is refused when the service is built, not accepted."""
    with pytest.raises(SettingsError, match="admin token must be printable ASCII") as refused:
        build_service(Settings(state=MEMORY, admin_token="s\u00e9same"))
    assert "s\u00e9same" not in str(refused.value)


def test_a_client_leaving_mid_body_is_no_server_error(caplog: pytest.LogCaptureFixture) -> None:
    """Content-Length 100, 10 bytes sent, then the socket closed: no 500, no traceback.

    It counts as a client error (499, never sent), not as a server error.
    """
    caplog.set_level(logging.INFO)
    with ThreadedService() as running:
        stats = running.service.stats
        host, port = running.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            sock.sendall(
                b"POST /server/mode HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 100\r\n\r\n" + MAINTENANCE[:10]
            )
            time.sleep(0.1)  # the route is reading the body when the client goes
        deadline = time.monotonic() + 5
        while stats.client_errors + stats.server_errors == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.1)  # let the server log what it would log
        status = running.client().get("/server/status").json()
    assert (stats.client_errors, stats.server_errors) == (1, 0)
    assert (status["client_errors_today"], status["server_errors_today"]) == (1, 0)
    assert status["mode"] == "production"
    logged = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert logged == [], [r.getMessage() for r in logged]
