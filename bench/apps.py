"""The applications the HTTP benchmarks compare, and a way to call them without sockets.

- ``bare_app()``: a trivial Starlette app, one plain-text route under ``/profiles``;
- ``gated_app()``: the same app behind :class:`GateMiddleware`;
- ``basehttp_app()``: the same app behind :class:`BaseHTTPGate`, the same gate written the way
  most maintenance-mode packages are (Starlette's ``BaseHTTPMiddleware``).

``PROFILE_PATH`` is in a counted category (``profile``) and production admits it: every gated
request is classified, admitted, counted and released. The ``*_server`` factories are what the
end-to-end benchmarks give to ``uvicorn --factory``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from typing import Any

from servermode.adapters.bootstrap import Service, build_service
from servermode.adapters.cli.settings import Settings
from servermode.adapters.http.classify import CONTEXT_SERVICES_RULES, RouteRules, normalise_path
from servermode.adapters.http.middleware import GateMiddleware
from servermode.adapters.http.problems import (
    ERROR_HANDLERS,
    problem_for_exception,
    problem_response,
)
from servermode.adapters.http.stats import RequestStats
from servermode.adapters.http.status import status_document
from servermode.adapters.store.factory import MEMORY
from servermode.core import AuditLog, InMemoryStore, ModeController, Refused
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "PROFILE_PATH",
    "STATIC_JSON_PATH",
    "STATUS_PATH",
    "AdmitOnly",
    "BaseHTTPGate",
    "PassThrough",
    "asgi_lifespan",
    "bare_app",
    "bare_server",
    "basehttp_app",
    "controller",
    "gated_app",
    "gated_server",
    "http_scope",
    "refusing_server",
    "request_loop",
    "service_server",
    "started_loop",
    "status_server",
    "status_service",
]

PROFILE_PATH = "/profiles/1"


async def _profile(request: Request) -> Response:
    return PlainTextResponse(f"profile {request.path_params['id']}")


def bare_app() -> Starlette:
    return Starlette(routes=[Route("/profiles/{id}", _profile)])


def controller(audit: AuditLog | None = None) -> ModeController:
    """A controller starting in production over an in-memory store (not on the request path)."""
    return ModeController(InMemoryStore(), audit=audit)


def gated_app(controller: ModeController) -> GateMiddleware:
    return GateMiddleware(bare_app(), controller)


class PassThrough:
    """A pure ASGI middleware that does nothing: the price of one layer more."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


class AdmitOnly:
    """One layer that admits ``category`` and releases when the app returns: the gate's floor.

    Nothing else of the gate (no classification, no path check, no counters, no send wrapper);
    the controller must be started by whoever uses it.
    """

    def __init__(self, app: ASGIApp, controller: ModeController, category: str) -> None:
        self.app = app
        self.controller = controller
        self.category = category

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ticket = self.controller.admit(self.category)
        try:
            await self.app(scope, receive, send)
        finally:
            ticket.release()


class BaseHTTPGate(BaseHTTPMiddleware):
    """The same gate as a ``BaseHTTPMiddleware``: classify, admit, 503 or call_next, release.

    The controller must be started by the application (it has no lifespan of its own).
    """

    def __init__(
        self, app: ASGIApp, controller: ModeController, rules: RouteRules = CONTEXT_SERVICES_RULES
    ) -> None:
        super().__init__(app)
        self.controller = controller
        self.rules = rules

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        category = self.rules.classify(request.method, normalise_path(request.url.path))
        try:
            ticket = self.controller.admit(category)
        except Refused as exc:
            problem, description, headers = problem_for_exception(exc)
            return problem_response(request.scope, problem, description, headers)
        try:
            return await call_next(request)
        finally:
            ticket.release()


def basehttp_app(controller: ModeController) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await controller.start()
        try:
            yield
        finally:
            await controller.close()

    return Starlette(
        routes=[Route("/profiles/{id}", _profile)],
        lifespan=lifespan,
        middleware=[Middleware(BaseHTTPGate, controller=controller)],
    )


# -- uvicorn --factory entry points (the controller's audit goes to the server's stdout) -------


def bare_server() -> ASGIApp:
    return bare_app()


def gated_server() -> ASGIApp:
    return gated_app(controller())


def refusing_server() -> ASGIApp:
    """The gated app in maintenance: ``GET /profiles/1`` is refused by the gate (503)."""
    return gated_app(ModeController(InMemoryStore(), initial_mode="maintenance"))


def service_server() -> ASGIApp:
    """What ``servermode serve --app bench.served:app --state :memory:`` serves, for uvicorn's
    command line: the same composition (gate, admin dispatch, admin routes) around the bare app.
    """
    return build_service(Settings(state=MEMORY), app=bare_app()).app


# -- the status document against a JSON document of the same size ---------------------------

STATUS_PATH = "/server/status"
#: An app route that a rule puts in the status route's category (``server``, not counted).
STATIC_JSON_PATH = "/health/static"
STATIC_JSON_RULES = RouteRules.from_table([("*", STATIC_JSON_PATH, "server")], default="service")


def status_service() -> Service:
    """The composed service (gate, admin routes) over an app with one static JSON route.

    That route answers a status document taken once, at start: same keys, same size, same
    headers; the status route computes its document on every request.
    """
    document = status_document(ModeController(), RequestStats())
    document["last_request"] = document["system_time"]  # non-null, as under load

    async def static(request: Request) -> Response:
        return JSONResponse(document, headers={"Cache-Control": "no-store"})

    app = Starlette(routes=[Route(STATIC_JSON_PATH, static)], exception_handlers=ERROR_HANDLERS)
    return build_service(Settings(state=MEMORY), app=app, rules=STATIC_JSON_RULES)


def status_server() -> ASGIApp:
    return status_service().app


# -- calling an app without sockets ------------------------------------------------------------


def http_scope(method: str, path: str) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode("ascii"),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1:8000"), (b"accept", b"*/*")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


_REQUEST: Message = {"type": "http.request", "body": b"", "more_body": False}


def request_loop(
    app: ASGIApp, method: str, path: str, expect: int = 200
) -> Callable[[int], Awaitable[float]]:
    """``await run(n)``: call ``app`` ``n`` times one after another; the seconds it took.

    Every response must have status ``expect`` (a benchmark of refusals is not a benchmark).
    """
    template = http_scope(method, path)
    statuses: list[int] = []

    async def receive() -> Message:
        return _REQUEST

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    async def run(n: int) -> float:
        statuses.clear()
        start = time.perf_counter()
        for _ in range(n):
            await app(dict(template), receive, send)
        elapsed = time.perf_counter() - start
        wrong = [s for s in statuses if s != expect]
        if len(statuses) != n or wrong:
            raise RuntimeError(f"{path}: {len(statuses)} responses of {n}, unexpected {wrong[:5]}")
        return elapsed

    return run


@contextlib.asynccontextmanager
async def asgi_lifespan(app: ASGIApp) -> AsyncIterator[None]:
    """Run ``app``'s lifespan: startup on entry, shutdown on exit, as a server would."""
    incoming: asyncio.Queue[Message] = asyncio.Queue()
    outgoing: asyncio.Queue[Message] = asyncio.Queue()

    async def send(message: Message) -> None:
        await outgoing.put(message)

    async def run() -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
        await app(scope, incoming.get, send)

    task = asyncio.create_task(run())
    await incoming.put({"type": "lifespan.startup"})
    started = await outgoing.get()
    if started["type"] != "lifespan.startup.complete":
        raise RuntimeError(f"lifespan startup: {started}")
    try:
        yield
    finally:
        await incoming.put({"type": "lifespan.shutdown"})
        await outgoing.get()
        await task


@contextlib.contextmanager
def started_loop(
    *apps: ASGIApp, controllers: Iterable[ModeController] = ()
) -> Iterator[asyncio.AbstractEventLoop]:
    """An event loop on which ``apps`` have completed their lifespan startup.

    ``controllers`` (used without a lifespan) are started and closed on it as well.
    The benchmark drives its rounds with ``loop.run_until_complete`` (the harness is
    synchronous); the lifespans wait in the background and shut down on exit.
    """
    loop = asyncio.new_event_loop()
    stack = contextlib.AsyncExitStack()
    try:
        for app in apps:
            loop.run_until_complete(stack.enter_async_context(asgi_lifespan(app)))
        for started in controllers:
            loop.run_until_complete(started.start())
            stack.push_async_callback(started.close)
        yield loop
    finally:
        loop.run_until_complete(stack.aclose())
        loop.close()
