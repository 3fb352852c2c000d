"""The error table and the Context Services error body."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from servermode.adapters.http.problems import (
    Problem,
    error_body,
    problem_body,
    problem_for_exception,
    problem_for_status,
    problem_response,
    request_uri,
    send_problem,
)
from servermode.core import (
    InvalidMode,
    Refused,
    State,
    StoreError,
    SwitchInProgress,
)
from starlette.datastructures import URL
from starlette.types import Message, Send

from ..asgi import http_scope


class TestTable:
    def test_codes_are_unique_and_derive_from_the_status(self) -> None:
        """Each application code is unique, four digits, led by its status's first two."""
        codes = [p.code for p in Problem]
        assert len(set(codes)) == len(codes)
        assert all(len(str(p.code)) == 4 for p in Problem)
        assert all(str(p.code)[:2] == str(p.status)[:2] for p in Problem)

    def test_bad_parameter_is_the_documented_4020(self) -> None:
        """The Context Services example: 400, "bad parameter", 4020."""
        problem = Problem.BAD_PARAMETER
        assert (problem.status, problem.title, problem.code) == (400, "bad parameter", 4020)

    def test_statuses_map_to_their_problem(self) -> None:
        """A bare status picks its problem; an unknown one is an internal error."""
        assert problem_for_status(405) is Problem.METHOD_NOT_ALLOWED
        assert problem_for_status(503) is Problem.UNAVAILABLE_IN_MODE
        assert problem_for_status(418) is Problem.INTERNAL_ERROR


class TestExceptions:
    def test_invalid_mode_names_server_mode_and_the_value(self) -> None:
        """InvalidMode is a 400 naming `server mode` and the bad value."""
        problem, description, headers = problem_for_exception(InvalidMode("holiday"))
        assert problem is Problem.BAD_PARAMETER
        assert description == 'bad server mode "holiday": expected "production" or "maintenance"'
        assert headers == {}

    def test_refusal_carries_retry_after_and_the_mode(self) -> None:
        """A refusal is 503 with Retry-After, naming the mode that refuses."""
        refused = Refused(State.MAINTENANCE, "profile", 30)
        problem, description, headers = problem_for_exception(refused)
        assert problem is Problem.UNAVAILABLE_IN_MODE
        assert "in maintenance mode" in description
        assert headers == {"Retry-After": "30"}

    def test_switch_in_progress(self) -> None:
        """A switch under way is 503 "mode switch in progress" with Retry-After."""
        exc = SwitchInProgress(State.DRAINING_TO_PRODUCTION, 7)
        problem, _, headers = problem_for_exception(exc)
        assert problem is Problem.SWITCH_IN_PROGRESS
        assert headers == {"Retry-After": "7"}

    def test_store_error_says_the_mode_did_not_change(self) -> None:
        """A store failure is 503 and says the mode did not change."""
        problem, description, _ = problem_for_exception(StoreError("disk full"))
        assert problem is Problem.STORE_UNAVAILABLE
        assert description == "the server mode did not change: disk full"


def test_error_body_has_the_five_fields() -> None:
    """The body is http_method, title, description, code and the full URI."""
    scope = http_scope("POST", "/server/mode", query_string=b"x=1")
    assert error_body(scope, Problem.BAD_PARAMETER, "bad server mode 5") == {
        "http_method": "POST",
        "title": "bad parameter",
        "description": "bad server mode 5",
        "code": 4020,
        "uri": "http://testserver/server/mode?x=1",
    }


def test_problem_response_is_compact_json_with_headers() -> None:
    """The response has the problem's status, JSON media type and the extra headers."""
    response = problem_response(
        http_scope(), Problem.SWITCH_IN_PROGRESS, "busy", {"Retry-After": "3"}
    )
    assert response.status_code == 503
    assert response.headers["retry-after"] == "3"
    assert response.headers["content-type"] == "application/json"
    assert json.loads(bytes(response.body))["title"] == "mode switch in progress"


# -- the hot path of refusals: the same bytes as the plain construction ---------------------

_text = st.text(max_size=40)
_header_value = st.binary(max_size=40)
_scopes = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["http", "websocket"]),
        "method": st.sampled_from(["GET", "POST", "PATCH", "Dé", "\u2603"]),
        "scheme": st.sampled_from(["http", "https", "ws", "wss"]),
        "path": st.text(max_size=30).map(lambda p: "/" + p),
        "query_string": st.text(max_size=20).map(lambda q: q.encode("utf-8")),
        "server": st.one_of(
            st.none(),
            st.tuples(st.sampled_from(["127.0.0.1", "::1", "example.org"]), st.integers(1, 65535)),
        ),
        "headers": st.lists(
            st.tuples(st.sampled_from([b"host", b"accept", b"x-a"]), _header_value), max_size=3
        ),
    }
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(_scopes, st.sampled_from(list(Problem)), _text)
def test_problem_body_is_json_dumps_of_the_error_body(
    scope: dict[str, Any], problem: Problem, description: str
) -> None:
    """The precomputed body is byte for byte the compact JSON of error_body, URI included
    (Starlette's own URL of the scope: host header, server, scheme, path, query)."""
    expected = {
        **error_body(scope, problem, description),
        "uri": str(URL(scope=scope)),
    }
    assert problem_body(scope, problem, description) == json.dumps(
        expected, separators=(",", ":")
    ).encode("ascii")
    assert request_uri(scope) == str(URL(scope=scope))


@pytest.mark.parametrize(
    "headers", [{}, {"Retry-After": "7"}, {"Connection": "close"}, {"Content-Type": "text/x"}]
)
def test_send_problem_sends_what_the_response_sends(headers: dict[str, str]) -> None:
    """The refusal's two messages are exactly problem_response's: status, headers in order,
    body."""
    scope = http_scope("GET", "/profiles/1", query_string=b"a=1")
    direct = _messages(
        lambda send: send_problem(scope, send, Problem.UNAVAILABLE_IN_MODE, "no", headers)
    )
    response = problem_response(scope, Problem.UNAVAILABLE_IN_MODE, "no", headers)
    via_response = _messages(lambda send: response(scope, _receive, send))
    assert direct == via_response
    assert direct[0]["status"] == 503


def test_refusal_descriptions_are_reused() -> None:
    """A refusal's words depend on the state and category only, so they are built once."""
    one = problem_for_exception(Refused(State.MAINTENANCE, "profile", 60))[1]
    two = problem_for_exception(Refused(State.MAINTENANCE, "profile", 5))[1]
    assert one == two and one is two


async def _receive() -> Message:
    raise AssertionError("not read")


def _messages(answer: Callable[[Send], Awaitable[None]]) -> list[Message]:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(answer(send))  # type: ignore[arg-type]
    return sent
