"""The access log (issue 14 item 1): uvicorn's line, rendered cheaply, for every answer."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from servermode.adapters.bootstrap import build_service
from servermode.adapters.cli.settings import Settings
from servermode.adapters.http.access import AccessLog, AccessLogMiddleware, request_line
from servermode.adapters.http.middleware import GateMiddleware
from servermode.adapters.store.factory import MEMORY
from starlette.types import Message
from uvicorn.protocols.utils import get_client_addr, get_path_with_query_string

from ..asgi import http_scope

AT = 1_700_000_000.25


@settings(max_examples=300)
@given(
    st.text(max_size=30).map(lambda p: "/" + p),
    st.text(alphabet=st.characters(max_codepoint=127), max_size=20),
)
def test_the_request_line_is_uvicorns(path: str, query: str) -> None:
    """Client and request line exactly as uvicorn's access log writes them (path quoted)."""
    scope = http_scope("GET", path, query_string=query.encode("ascii"))
    client, line = request_line(scope)
    assert client == get_client_addr(scope)  # type: ignore[arg-type]
    assert line == f"GET {get_path_with_query_string(scope)} HTTP/1.1"  # type: ignore[arg-type]


def test_a_json_line_is_a_structlog_line_with_the_request() -> None:
    """event, client, request, status, level, logger and a UTC ISO timestamp, as structlog's
    TimeStamper writes it."""
    lines: list[str] = []
    AccessLog(lines.append, clock=lambda: AT)(http_scope("POST", "/a b", query_string=b"x=1"), 201)
    assert json.loads(lines[0]) == {
        "event": "http_request",
        "client": "127.0.0.1:50000",
        "request": "POST /a%20b?x=1 HTTP/1.1",
        "status": 201,
        "level": "info",
        "logger": "servermode.access",
        "timestamp": datetime.fromtimestamp(AT, UTC).isoformat().replace("+00:00", "Z"),
    }


def test_a_console_line_escapes_control_characters() -> None:
    """A line for people: time, level, event, logger, fields; nothing in the request can
    break the line."""
    lines: list[str] = []
    scope = http_scope("GET", "/x", query_string=b"a\nb")
    AccessLog(lines.append, as_json=False, clock=lambda: AT)(scope, 404)
    assert lines[0].startswith("2023-11-14T22:13:20.250000Z [info     ] http_request ")
    assert "[servermode.access] client=127.0.0.1:50000 request='GET /x?a\\nb HTTP/1.1'" in lines[0]
    assert lines[0].endswith("status=404") and "\n" not in lines[0]


@pytest.mark.parametrize("mode", ["production", "maintenance"])
def test_the_service_logs_every_answer_the_gates_refusals_included(mode: str) -> None:
    """build_service with an access log: one call per answer, with the status sent."""
    logged: list[tuple[str, int]] = []
    service = build_service(
        Settings(state=MEMORY, initial_mode=mode, demo_delay=0),
        access_log=lambda scope, status: logged.append((scope["path"], status)),
    )
    assert isinstance(service.app.app, AccessLogMiddleware)  # inside ReportStart

    async def call(path: str) -> int:
        sent: list[Message] = []

        async def receive() -> Message:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Message) -> None:
            sent.append(message)

        await service.app(http_scope("GET", path), receive, send)
        return int(sent[0]["status"])

    async def run() -> list[int]:
        return [await call(p) for p in ("/profiles/1", "/server/status", "/nowhere/at/all")]

    statuses = asyncio.run(run())
    paths = ["/profiles/1", "/server/status", "/nowhere/at/all"]
    assert logged == list(zip(paths, statuses, strict=True))
    assert statuses[0] == (200 if mode == "production" else 503)


def test_without_an_access_log_there_is_no_layer() -> None:
    """Off, the service is the gate itself: nothing is paid per request for the access log."""
    service = build_service(Settings(state=MEMORY))
    assert isinstance(service.app.app, GateMiddleware)  # ReportStart, then the gate


def test_other_scopes_pass_untouched() -> None:
    """Lifespan (and WebSocket) scopes are not logged and reach the app as they are."""
    seen: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    layer = AccessLogMiddleware(app, lambda scope, status: seen.append("logged"))
    asyncio.run(layer({"type": "lifespan"}, None, None))  # type: ignore[arg-type]
    assert seen == ["lifespan"]
