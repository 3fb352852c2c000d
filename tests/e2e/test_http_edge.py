"""The gate at the HTTP edge against a real uvicorn: work after the response, encoded slashes."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import unquote

import pytest
from servermode.core import State
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .servers import ThreadedService

pytestmark = pytest.mark.timeout(30)

WRITE_TAKES = 1.0


def background_write_app(observe: Callable[[], State], states: list[str]) -> Starlette:
    """``PUT /profiles/{id}`` answers at once and writes in a ``BackgroundTask`` afterwards.

    The write records the state the server was in when it began and when it ended.
    """

    async def write() -> None:
        states.append(observe().value)
        await asyncio.sleep(WRITE_TAKES)
        states.append(observe().value)

    async def put_profile(request: Request) -> Response:
        status = int(request.query_params.get("status", "200"))
        return JSONResponse({"accepted": True}, status, background=BackgroundTask(write))

    return Starlette(routes=[Route("/profiles/{id}", put_profile, methods=["PUT"])])


class TestWorkAfterTheResponse:
    def test_a_switch_waits_for_a_background_task(self) -> None:
        """The drain waits for the app's background write; the write never runs in maintenance.

        The request counts until the app's call returns, not until its last body chunk, so
        the write is in flight (status shows it) and the switch completes only after it.
        The answer itself is counted at once (409: a client error in the status counters).
        """
        states: list[str] = []
        running: ThreadedService
        app = background_write_app(lambda: running.service.controller.state, states)
        with ThreadedService(app, drain_timeout=10) as running, ThreadPoolExecutor(1) as pool:
            client = running.client()
            answered = client.put("/profiles/1", params={"status": 409})
            answered_at = time.monotonic()
            switch = pool.submit(client.post, "/server/mode", json={"mode": "maintenance"})
            time.sleep(0.3)
            during = client.get("/server/status").json()
            switch_response = switch.result()
            switched_at = time.monotonic()
            record = client.get("/server/transitions?limit=1").json()["transitions"][0]

        assert answered.status_code == 409
        assert during["state"] == "draining_to_maintenance"
        assert during["in_flight"]["profile"] == 1
        assert during["client_errors_today"] == 1  # counted when the answer began
        assert switch_response.status_code == 200
        assert switched_at - answered_at >= WRITE_TAKES - 0.1
        assert record["outcome"] == "completed"
        assert record["in_flight"]["profile"] == 1
        assert states == ["production", "draining_to_maintenance"]


def echo_path_app() -> Starlette:
    """``/files/{name:path}`` answers with the path it was handed, raw and decoded."""

    async def echo(request: Request) -> Response:
        return JSONResponse(
            {
                "name": request.path_params["name"],
                "path": request.scope["path"],
                "raw_path": request.scope["raw_path"].decode("ascii"),
            }
        )

    return Starlette(routes=[Route("/files/{name:path}", echo)])


def raw_get(url: str, target: str) -> tuple[int, dict[str, Any]]:
    """``GET target`` sent as it is (an HTTP client would resolve dot segments first)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), json.loads(body)


@pytest.fixture(scope="module")
def echo_service() -> Iterator[ThreadedService]:
    with ThreadedService(echo_path_app()) as running:
        yield running


class TestEncodedSlash:
    @pytest.mark.parametrize(
        ("target", "raw_path"),
        [
            ("/files//a%2Fb", "/files/a%2Fb"),
            ("/files/./x/../a%2Fb", "/files/a%2Fb"),
            ("/files/%2e%2e/files/a%2Fb/", "/files/a%2Fb/"),
            ("/files/a%2Fb", "/files/a%2Fb"),  # normal already: untouched
            ("//files/caf%C3%A9", "/files/caf%C3%A9"),  # other escapes are kept as sent
        ],
    )
    def test_an_encoded_slash_stays_encoded_for_the_app(
        self, echo_service: ThreadedService, target: str, raw_path: str
    ) -> None:
        """Normalising a path keeps ``%2F`` in ``raw_path``; the decoded path is the normal one."""
        status, echoed = raw_get(echo_service.url, target)
        assert status == 200, echoed
        assert echoed["raw_path"] == raw_path
        assert echoed["path"] == unquote(raw_path)
        assert echoed["name"] == unquote(raw_path).removeprefix("/files/")

    @pytest.mark.parametrize(
        "target",
        ["/files/x%2F..%2F..%2Fprofiles/1", "/files//a%2F%2Fb", "/files/a%2F.%2Fb/./"],
    )
    def test_an_encoded_slash_that_hides_a_dot_or_empty_segment_is_refused(
        self, echo_service: ThreadedService, target: str
    ) -> None:
        """Where raw and decoded paths would resolve apart, the answer is 400, not the app."""
        status, error = raw_get(echo_service.url, target)
        assert status == 400
        assert set(error) == {"http_method", "title", "description", "code", "uri"}
        assert error["code"] == 4020
        assert "%2F" in error["description"]
