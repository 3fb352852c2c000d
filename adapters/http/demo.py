"""The built-in demo application: one route per request category, each taking a moment.

Served by ``servermode serve`` when no ``--app`` is given, so that gating and draining can be
tried at once: start a slow profile read, ask for maintenance, watch new requests get 503
while the switch waits for it. ``?delay=<seconds>`` overrides the moment per request.

Given an ``observe`` callable (the service passes the controller's state), each answer also
says which state the server was in when the handler started and when it ended (``seen``), so
that a test can prove no request ran in a state that refuses its category.

Two WebSocket routes echo every text message (with the state it was answered in): a profile
one, which a switch to maintenance closes (1012), and a metadata read, which both modes admit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from servermode.core import State
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from .problems import ERROR_HANDLERS, Problem, problem_response

__all__ = ["DEMO_ROUTES", "DEMO_SOCKETS", "MAX_DELAY", "app", "demo_app"]

MAX_DELAY = 60.0

#: (method, path, category) of each demo route; the categories of the Context Services preset.
DEMO_ROUTES: tuple[tuple[str, str, str], ...] = (
    ("GET", "/profiles/{id}", "profile"),
    ("GET", "/services/{id}", "service"),
    ("GET", "/metadata/profiles/extensions", "schema_read"),
    ("POST", "/metadata/profiles/extensions", "schema"),
)

#: (path, category) of each demo WebSocket (a handshake is classified as a GET).
DEMO_SOCKETS: tuple[tuple[str, str], ...] = (
    ("/profiles/{id}/echo", "profile"),
    ("/metadata/profiles/echo", "schema_read"),
)


def demo_app(delay: float = 1.0, observe: Callable[[], State] | None = None) -> Starlette:
    """The demo application; each route takes ``delay`` seconds unless ``?delay=`` says.

    ``observe`` returns the server's state; when given, answers carry ``seen``:
    ``{"start": state, "end": state}`` read as the handler began and just before it answered.
    """
    if not 0 <= delay <= MAX_DELAY:
        raise ValueError(f"demo delay must be between 0 and {MAX_DELAY:g} seconds, not {delay}")

    def endpoint(category: str) -> Callable[[Request], Awaitable[Response]]:
        async def handle(request: Request) -> Response:
            start = observe() if observe is not None else None
            moment = _delay(request, delay)
            if isinstance(moment, Response):
                return moment
            await asyncio.sleep(moment)
            body: dict[str, object] = {
                "category": category,
                "method": request.method,
                "path": request.url.path,
                "took": moment,
            }
            if observe is not None and start is not None:
                body["seen"] = {"start": start.value, "end": observe().value}
            return JSONResponse(body)

        return handle

    def echo(category: str) -> Callable[[WebSocket], Awaitable[None]]:
        async def handle(websocket: WebSocket) -> None:
            await websocket.accept()
            try:
                while True:
                    text = await websocket.receive_text()
                    answer: dict[str, object] = {"category": category, "echo": text}
                    if observe is not None:
                        answer["state"] = observe().value
                    await websocket.send_json(answer)
            except WebSocketDisconnect:
                pass  # the client left, or the server closed the socket for a switch

        return handle

    async def index(request: Request) -> Response:
        return JSONResponse(
            {
                "demo": "servermode",
                "routes": [
                    {"method": method, "path": path, "category": category}
                    for method, path, category in DEMO_ROUTES
                ],
                "websockets": [
                    {"path": path, "category": category} for path, category in DEMO_SOCKETS
                ],
                "delay": delay,
            }
        )

    routes: list[BaseRoute] = [Route("/", index, methods=["GET"])]
    routes += [
        Route(path, endpoint(category), methods=[method]) for method, path, category in DEMO_ROUTES
    ]
    routes += [WebSocketRoute(path, echo(category)) for path, category in DEMO_SOCKETS]
    return Starlette(routes=routes, exception_handlers=ERROR_HANDLERS)


def _delay(request: Request, default: float) -> float | Response:
    raw = request.query_params.get("delay")
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value <= MAX_DELAY:
        return problem_response(
            request.scope,
            Problem.BAD_PARAMETER,
            f"bad delay {raw!r}: seconds between 0 and {MAX_DELAY:g}",
        )
    return value


#: The demo with its default delay, for ``--app servermode.adapters.demo:app``.
app = demo_app()
