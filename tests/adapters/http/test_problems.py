"""The error table and the Context Services error body."""

from __future__ import annotations

import json

from servermode.adapters.http.problems import (
    Problem,
    error_body,
    problem_for_exception,
    problem_for_status,
    problem_response,
)
from servermode.core import (
    InvalidMode,
    Refused,
    State,
    StoreError,
    SwitchInProgress,
)

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
