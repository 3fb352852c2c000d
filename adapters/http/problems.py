"""The Context Services error body, and which HTTP answer each failure gets (one table).

Every 4xx/5xx answer of servermode, from the admin routes and from the gate middleware alike,
is ``{"http_method", "title", "description", "code", "uri"}``: ``code`` is a four-digit
application code (the HTTP status's first two digits, then two of detail; 4020 for a bad
parameter is Context Services' own), ``uri`` the full request URI.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable, Mapping
from enum import Enum
from json.encoder import encode_basestring_ascii
from typing import Any

from servermode.core import (
    InvalidMode,
    InvalidWindow,
    ModeChangeFailed,
    Refused,
    ServerModeError,
    State,
    StoreError,
    SwitchInProgress,
)
from servermode.core.fleet import NoSuchInstance
from servermode.core.logs import get_logger
from starlette.datastructures import URL
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Message, Scope, Send

__all__ = [
    "CLIENT_CLOSED_REQUEST",
    "ERROR_HANDLERS",
    "EXCEPTION_PROBLEMS",
    "Problem",
    "ProblemError",
    "answering_problems",
    "error_body",
    "internal_error_response",
    "problem_body",
    "problem_for_exception",
    "problem_for_status",
    "problem_response",
    "refusal_description",
    "request_uri",
    "send_problem",
]


class Problem(Enum):
    """Each kind of error answer: HTTP status, title, application code."""

    BAD_PARAMETER = (400, "bad parameter", 4020)
    UNAUTHORIZED = (401, "unauthorized", 4010)
    FORBIDDEN = (403, "forbidden", 4030)
    NOT_FOUND = (404, "not found", 4040)
    METHOD_NOT_ALLOWED = (405, "method not allowed", 4050)
    REQUEST_TIMEOUT = (408, "request timeout", 4080)
    NOTHING_TO_CANCEL = (409, "nothing to cancel", 4090)
    NO_SUCH_INSTANCE = (409, "no such instance", 4091)
    PAYLOAD_TOO_LARGE = (413, "payload too large", 4130)
    UNSUPPORTED_MEDIA_TYPE = (415, "unsupported media type", 4150)
    INTERNAL_ERROR = (500, "internal server error", 5000)
    UNAVAILABLE_IN_MODE = (503, "service unavailable", 5030)
    SWITCH_IN_PROGRESS = (503, "mode switch in progress", 5031)
    MODE_NOT_CHANGED = (503, "mode not changed", 5032)
    STORE_UNAVAILABLE = (503, "state store unavailable", 5033)

    def __init__(self, status: int, title: str, code: int) -> None:
        self.status = status
        self.title = title
        self.code = code


class ProblemError(Exception):
    """A request answered with the error body instead of being acted on.

    Raised by the parsing and credential checks of the admin routes; one handler turns it into
    the answer (:func:`answering_problems`, :data:`ERROR_HANDLERS`).
    """

    def __init__(
        self, problem: Problem, description: str, headers: Mapping[str, str] | None = None
    ) -> None:
        self.problem = problem
        self.description = description
        self.headers = dict(headers or {})
        super().__init__(description)

    @classmethod
    def of(cls, exc: ServerModeError) -> ProblemError:
        """The answer to a core exception (see :data:`EXCEPTION_PROBLEMS`)."""
        return cls(*problem_for_exception(exc))


#: What the counters see of a request whose client left while sending its body (nginx's
#: "client closed request"): nothing is sent, as there is no one to send it to, and it counts
#: as the client's failure, not the server's.
CLIENT_CLOSED_REQUEST = 499

_log = get_logger("servermode.http")


def refusal_description(refused: Refused) -> str:
    """What a request refused by the mode is told: the mode (or the switch) that refuses it."""
    return _refusal_description(refused.state, refused.category)


@functools.lru_cache(maxsize=256)
def _refusal_description(state: State, category: str) -> str:
    # Cached: a refusal is a hot path (every request of the outgoing kind during a drain), and
    # its words depend only on the state and the category. Categories are the policy's few.
    if state.is_draining:
        return (
            f"the operation is unavailable while the server is switching from {state.mode} "
            f"to {state.target} mode ({category} request)"
        )
    return (
        f"the operation is unavailable while the server is in {state.mode} mode "
        f"({category} request)"
    )


def _switch_in_progress(exc: SwitchInProgress) -> str:
    state = exc.state
    return (
        f"the operation is unavailable while the server is switching from {state.mode} "
        f"to {state.target} mode (mode change; retry in {exc.retry_after}s)"
    )


def _invalid_mode(exc: InvalidMode) -> str:
    shown = json.dumps(exc.value, default=repr)
    return f'bad server mode {shown}: expected "production" or "maintenance"'


def _not_changed(exc: ServerModeError) -> str:
    return f"the server mode did not change: {exc}"


# Core exception -> answer, most specific first; the describer turns the facts into words.
EXCEPTION_PROBLEMS: tuple[tuple[type[ServerModeError], Problem, Callable[[Any], str]], ...] = (
    (InvalidMode, Problem.BAD_PARAMETER, _invalid_mode),
    (InvalidWindow, Problem.BAD_PARAMETER, str),
    (Refused, Problem.UNAVAILABLE_IN_MODE, refusal_description),
    (SwitchInProgress, Problem.SWITCH_IN_PROGRESS, _switch_in_progress),
    (ModeChangeFailed, Problem.MODE_NOT_CHANGED, _not_changed),
    (StoreError, Problem.STORE_UNAVAILABLE, _not_changed),
    (NoSuchInstance, Problem.NO_SUCH_INSTANCE, str),
)

_BY_STATUS: Mapping[int, Problem] = {
    problem.status: problem
    for problem in reversed(Problem)  # the first problem of each status wins
}


def problem_for_status(status: int) -> Problem:
    """The problem a bare HTTP status stands for (404, 405, ...); 500 when unknown."""
    return _BY_STATUS.get(status, Problem.INTERNAL_ERROR)


def problem_for_exception(exc: ServerModeError) -> tuple[Problem, str, dict[str, str]]:
    """The answer to a core exception: problem, description and extra headers."""
    headers: dict[str, str] = {}
    retry_after = getattr(exc, "retry_after", None)
    if isinstance(retry_after, int):
        headers["Retry-After"] = str(retry_after)
    if type(exc) is Refused:  # the hot path: every refusal by the gate
        return Problem.UNAVAILABLE_IN_MODE, refusal_description(exc), headers
    for kind, problem, describe in EXCEPTION_PROBLEMS:
        if isinstance(exc, kind):
            return problem, describe(exc), headers
    return Problem.INTERNAL_ERROR, str(exc), headers


def error_body(scope: Scope, problem: Problem, description: str) -> dict[str, Any]:
    method = scope.get("method", "GET" if scope.get("type") == "websocket" else "")
    return {
        "http_method": method,
        "title": problem.title,
        "description": description,
        "code": problem.code,
        "uri": request_uri(scope),
    }


def request_uri(scope: Scope) -> str:
    """The full request URI, as Starlette's ``URL(scope=scope)`` writes it."""
    host = None
    for key, value in scope["headers"]:
        if key == b"host":
            host = value
            break
    server = scope.get("server")
    return _request_uri(
        scope.get("scheme", "http"),
        host,
        tuple(server) if server is not None else None,
        scope["path"],
        scope.get("query_string", b""),
    )


@functools.lru_cache(maxsize=1024)
def _request_uri(
    scheme: str,
    host: bytes | None,
    server: tuple[str, int] | None,
    path: str,
    query_string: bytes,
) -> str:
    # Cached: building a URL from a scope (checking the Host header among others) costs more
    # than the rest of a refusal, and during a drain the same URIs are refused over and over.
    # These are all of the scope that URL(scope=...) reads, so the URI is exactly its own.
    scope: dict[str, Any] = {
        "scheme": scheme,
        "server": server,
        "path": path,
        "query_string": query_string,
        "headers": [(b"host", host)] if host is not None else [],
    }
    return str(URL(scope=scope))


def problem_body(scope: Scope, problem: Problem, description: str) -> bytes:
    """:func:`error_body` as compact JSON, built from parts that depend on the problem only.

    Exactly ``json.dumps(error_body(...), separators=(",", ":"))``, without building the dict
    and encoding it on every request: a refusal is a hot path.
    """
    method = scope.get("method", "GET" if scope.get("type") == "websocket" else "")
    return b"".join(
        (
            b'{"http_method":',
            encode_basestring_ascii(method).encode("ascii"),
            _problem_middle(problem, description),
            encode_basestring_ascii(request_uri(scope)).encode("ascii"),
            b"}",
        )
    )


@functools.lru_cache(maxsize=256)
def _problem_middle(problem: Problem, description: str) -> bytes:
    # From the title to "uri": the same for every request answered with this problem; the
    # descriptions repeated on a hot path (refusals) are a few per state and category.
    return (
        f',"title":{encode_basestring_ascii(problem.title)}'
        f',"description":{encode_basestring_ascii(description)}'
        f',"code":{problem.code},"uri":'
    ).encode("ascii")


def problem_response(
    scope: Scope,
    problem: Problem,
    description: str,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """The error answer as a Starlette response (itself an ASGI app, usable from middleware)."""
    return Response(
        problem_body(scope, problem, description),
        status_code=problem.status,
        headers=dict(headers or {}),
        media_type="application/json",
    )


async def send_problem(
    scope: Scope,
    send: Send,
    problem: Problem,
    description: str,
    headers: Mapping[str, str] | None = None,
) -> None:
    """Send :func:`problem_response`'s answer to an HTTP request, without building a Response.

    The same status, headers (in the same order) and body; for the gate's refusals, a hot path.
    """
    body = problem_body(scope, problem, description)
    raw = [
        (name.lower().encode("latin-1"), value.encode("latin-1"))
        for name, value in (headers or {}).items()
    ]
    if headers and not _SET_BY_RESPONSE.isdisjoint(name for name, _ in raw):
        # Rare (no problem of servermode's sets these): let Starlette merge them as it does.
        await problem_response(scope, problem, description, headers)(scope, _no_receive, send)
        return
    raw.append((b"content-length", str(len(body)).encode("ascii")))
    raw.append(_JSON_TYPE)
    await send({"type": "http.response.start", "status": problem.status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def _no_receive() -> Message:
    raise RuntimeError("an error answer does not read the request")


_SET_BY_RESPONSE = frozenset({b"content-length", b"content-type"})
_JSON_TYPE = (b"content-type", b"application/json")


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    problem = problem_for_status(exc.status_code)
    if problem is Problem.METHOD_NOT_ALLOWED:
        allowed = (exc.headers or {}).get("Allow", "")
        description = f"{request.method} is not allowed on {request.url.path} (allowed: {allowed})"
    elif problem is Problem.NOT_FOUND:
        description = f"no resource at {request.url.path}"
    else:
        description = exc.detail
    return problem_response(request.scope, problem, description, exc.headers)


def internal_error_response(scope: Scope) -> Response:
    """The answer to a request the application failed on.

    ``Connection: close``: the ASGI server closes the connection after an application error
    (uvicorn does), so the client is told not to send another request on it, which would
    otherwise race the close and be reset.
    """
    return problem_response(
        scope,
        Problem.INTERNAL_ERROR,
        "the server failed to answer this request",
        {"Connection": "close"},
    )


async def _internal_error(request: Request, exc: Exception) -> Response:
    # The server logs the traceback; the client gets the error body, never the traceback.
    return internal_error_response(request.scope)


async def _problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ProblemError)
    if exc.problem in (Problem.UNAUTHORIZED, Problem.FORBIDDEN):
        # Refused credentials leave a trace (someone probing for tokens shows in the log);
        # the token itself never does.
        client = request.client
        _log.warning(
            "admin_auth_refused",
            path=request.url.path,
            client=f"{client.host}:{client.port}" if client is not None else None,
            reason=exc.description,
        )
    return problem_response(request.scope, exc.problem, exc.description, exc.headers)


async def _server_mode_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServerModeError)
    return await _problem(request, ProblemError.of(exc))


async def _client_gone(request: Request, exc: Exception) -> Response:
    # Not a failure of the server: no 500, no traceback. The answer reaches no one (the ASGI
    # server drops what is sent after a disconnect); its status is what the counters see.
    return Response(status_code=CLIENT_CLOSED_REQUEST)


_Handler = Callable[[Request, Exception], Awaitable[Response]]

# The failures an endpoint answers itself, most specific first.
_ANSWERED: tuple[tuple[type[Exception], _Handler], ...] = (
    (ProblemError, _problem),
    (ServerModeError, _server_mode_error),
    (ClientDisconnect, _client_gone),
)


def answering_problems(
    endpoint: Callable[[Request], Awaitable[Response]],
) -> Callable[[Request], Awaitable[Response]]:
    """``endpoint``, answering a :class:`ProblemError` (or a core error, or a client gone) itself.

    The admin routes are wrapped so, rather than relying on the exception handlers of the
    application they are mounted in: added to any Starlette or FastAPI app's routes, they
    still answer with the error body. The handlers are those of :data:`ERROR_HANDLERS`.
    """

    @functools.wraps(endpoint)
    async def answer(request: Request) -> Response:
        try:
            return await endpoint(request)
        except (ProblemError, ServerModeError, ClientDisconnect) as exc:
            handler = next(h for kind, h in _ANSWERED if isinstance(exc, kind))
            return await handler(request, exc)

    return answer


#: Exception handlers that answer with the error body: problems raised by routes, core errors,
#: Starlette's own errors (404, 405), and anything else (500).
ERROR_HANDLERS: Mapping[Any, Any] = {
    **dict(_ANSWERED),
    HTTPException: _http_error,
    Exception: _internal_error,
}
