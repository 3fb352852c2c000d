"""Faults in the application and its clients: counters stay exact, drains end, errors documented."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import httpx2
import jsonschema
import pytest
from servermode.adapters.http.middleware import GateMiddleware
from servermode.adapters.http.openapi import SCHEMAS
from servermode.core import ModeController

from tests.adapters.asgi import Peer, http_scope
from tests.e2e.servers import ThreadedService

from .conftest import FIGURES

pytestmark = pytest.mark.timeout(30)

FAULTY_APP = "tests.reliability.faulty_app:app"
ERROR = {**SCHEMAS["Error"]}


@contextmanager
def faulty_service(**settings: Any) -> Iterator[ThreadedService]:
    with ThreadedService(app=FAULTY_APP, **settings) as running:
        yield running


def in_flight(client: httpx2.Client) -> int:
    return sum(client.get("/server/status").json()["in_flight"].values())


def wait_in_flight(client: httpx2.Client, count: int, timeout: float = 5.0) -> int:
    deadline = time.monotonic() + timeout
    while (now := in_flight(client)) != count and time.monotonic() < deadline:
        time.sleep(0.01)
    return now


class TestApplicationFailures:
    @pytest.mark.parametrize("path", ["/profiles/raise", "/profiles/cancel"])
    def test_failing_requests_answer_the_error_body_and_are_released(self, path: str) -> None:
        """An app that raises or is cancelled answers 500 in the error body; nothing stays held."""
        with faulty_service(drain_timeout=5) as running, ThreadPoolExecutor(8) as pool:
            client = running.client()
            failing = [pool.submit(client.get, path, params={"after": 0.3}) for _ in range(8)]
            assert wait_in_flight(client, 8) == 8
            started = time.monotonic()
            switch = client.post("/server/mode", json={"mode": "maintenance"})
            took = time.monotonic() - started
            answers = [f.result() for f in failing]
            FIGURES["faults injected"] += len(answers)
            FIGURES["requests sent"] += len(answers) + 1
            FIGURES["switches made"] += 1
            # The drain ended with the failing requests, not at its 5 s timeout.
            assert switch.status_code == 200
            assert switch.headers["servermode-outcome"] == "completed"
            assert took < 2
            for answer in answers:
                assert answer.status_code == 500
                assert answer.headers["connection"] == "close"
                jsonschema.validate(answer.json(), ERROR)
            assert in_flight(client) == 0
            assert client.get("/server/health/live").status_code == 200

    @pytest.mark.parametrize(
        ("policy", "status", "outcome", "mode"),
        [
            ("force", 200, "forced", "maintenance"),
            ("rollback", 503, "rolled_back", "production"),
        ],
    )
    def test_an_app_that_never_answers_meets_the_drain_timeout(
        self, policy: str, status: int, outcome: str, mode: str
    ) -> None:
        """A request that never ends: force switches and counts it a straggler; rollback stays."""
        with faulty_service(drain_timeout=0.3, timeout_policy=policy) as running:
            client = running.client()
            hanging = httpx2.Client(base_url=running.url, timeout=1)
            with ThreadPoolExecutor(1) as pool:
                hung = pool.submit(hanging.get, "/profiles/hang")
                assert wait_in_flight(client, 1) == 1
                switch = client.post("/server/mode", json={"mode": "maintenance"})
                after = client.get("/server/status").json()
                record = client.get("/server/transitions?limit=1").json()["transitions"][0]
                hanging.close()  # the client gives up; the app still hangs
                with pytest.raises(httpx2.HTTPError):
                    hung.result()
            FIGURES["faults injected"] += 1
            FIGURES["requests sent"] += 2
            FIGURES["switches made"] += status == 200
            # Stop without waiting for the request that never ends (asyncio cancels it).
            running.server.force_exit = True
        assert switch.status_code == status
        assert record["outcome"] == outcome
        assert record["stragglers"] == {"profile": 1}
        assert after["mode"] == mode
        assert after["state"] == mode
        # Still running, so still counted: exactly the one request that never answered.
        assert after["in_flight"]["profile"] == 1
        if status == 503:
            body = switch.json()
            jsonschema.validate(body, ERROR)
            assert body["code"] == 5032


class TestClientsGoingAway:
    def test_disconnects_mid_request_and_mid_stream_keep_counters_exact(self) -> None:
        """Clients that leave mid-request or mid-stream are counted while their work runs only."""
        leaving = 12
        with faulty_service(drain_timeout=5) as running:
            client = running.client()
            impatient = httpx2.Client(base_url=running.url, timeout=0.2)
            with ThreadPoolExecutor(leaving) as pool:
                gone = [
                    pool.submit(impatient.get, "/profiles/slow", params={"after": 1.0})
                    for _ in range(leaving)
                ]
                for future in gone:
                    with pytest.raises(httpx2.TimeoutException):
                        future.result()
            impatient.close()
            # Their handlers still run (uvicorn does not cancel them): exactly that many.
            assert in_flight(client) == leaving
            for _ in range(leaving):
                with (
                    httpx2.Client(base_url=running.url, timeout=5) as reader,
                    reader.stream("GET", "/profiles/stream") as stream,
                ):
                    assert next(stream.iter_bytes()).startswith(b"chunk 0")
            FIGURES["faults injected"] += 2 * leaving
            FIGURES["requests sent"] += 2 * leaving
            # The streams stop when their client goes; the slow handlers end at 1 s.
            assert wait_in_flight(client, 0) == 0
            switch = client.post("/server/mode", json={"mode": "maintenance"})
            FIGURES["switches made"] += 1
            record = client.get("/server/transitions?limit=1").json()["transitions"][0]
        assert switch.headers["servermode-outcome"] == "completed"
        assert record["in_flight"] == dict.fromkeys(record["in_flight"], 0)


class TestRawApplicationErrors:
    def test_a_raw_app_failing_before_answering_gets_the_error_body(self) -> None:
        """An ASGI app that raises before answering: the gate answers the documented 500."""

        async def scenario() -> tuple[Peer, int]:
            controller = ModeController()
            await controller.start()

            async def broken(scope: Any, receive: Any, send: Any) -> None:
                raise RuntimeError("boom")

            peer = Peer({"type": "http.request", "body": b""})
            with pytest.raises(RuntimeError, match="boom"):
                await GateMiddleware(broken, controller)(
                    http_scope(path="/profiles/1"), peer.receive, peer.send
                )
            return peer, controller.gate.total_in_flight

        peer, left = asyncio.run(scenario())
        assert left == 0
        assert peer.status == 500
        assert peer.headers["connection"] == "close"
        jsonschema.validate(json.loads(peer.body), ERROR)

    def test_a_cancelled_request_is_not_answered(self) -> None:
        """A request whose task is cancelled (its client is gone) is released, not answered."""

        async def scenario() -> tuple[Peer, int]:
            controller = ModeController()
            await controller.start()

            async def slow(scope: Any, receive: Any, send: Any) -> None:
                await asyncio.sleep(10)

            peer = Peer({"type": "http.request", "body": b""})
            task = asyncio.create_task(
                GateMiddleware(slow, controller)(
                    http_scope(path="/profiles/1"), peer.receive, peer.send
                )
            )
            await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return peer, controller.gate.total_in_flight

        peer, left = asyncio.run(scenario())
        assert (peer.sent, left) == ([], 0)
