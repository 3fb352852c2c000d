"""The gate at the HTTP edge, against a real uvicorn: work after the response, encoded slashes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

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
