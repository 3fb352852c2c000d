"""The gate as a pure ASGI middleware: classify, admit, count until the app returns.

Wraps any ASGI app. Each HTTP or WebSocket request is put in a category by the route rules
and admitted through the controller's gate *before* the app is called; a refusal is answered
here (503, the error body naming the mode, ``Retry-After``; a WebSocket handshake gets the
same answer where the server offers the ``websocket.http.response`` extension, and is closed
with 1013 otherwise). An admitted request counts as in flight until the app's call returns,
raises or is cancelled (client gone): work the app does after its response (a Starlette
``BackgroundTask``) is drained like the rest. The ticket is released exactly once; the answer
is counted in the status document's counters as it begins. An open WebSocket whose category
a drain's target refuses is closed with 1012 as the drain begins (:mod:`.sockets`).

The middleware owns the controller's life: the lifespan of the wrapped app starts it (before
the app's own startup) and closes it (after the app's own shutdown). An app that does not
speak the lifespan protocol is fine, and so is a server that never sends it (the first
request starts the controller). Companions (the fleet's bypass follower) start right after
the controller, before the first request, and close right before it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from datetime import datetime
from typing import Protocol
from urllib.parse import quote, unquote, unquote_to_bytes

from servermode.core import ModeController, Refused, ServerModeError, Ticket
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .bypass import Bypass
from .classify import CONTEXT_SERVICES_RULES, RouteRules, normalise_path
from .page import MaintenancePage, RefusalAnswers
from .problems import Problem, internal_error_response, problem_for_exception, problem_response
from .sockets import (
    WS_POLICY_VIOLATION,
    WS_SERVICE_RESTART,
    WS_TRY_AGAIN_LATER,
    ClosedForSwitch,
    OpenSockets,
    refuse_handshake,
)
from .stats import RequestStats, stats_for

__all__ = [
    "WS_POLICY_VIOLATION",
    "WS_SERVICE_RESTART",
    "WS_TRY_AGAIN_LATER",
    "Companion",
    "GateMiddleware",
]


class GateMiddleware:
    """Gate every request of ``app`` through ``controller``.

    Parameters:
        app: any ASGI application.
        controller: the mode controller whose gate admits requests (shared with the admin
            routes); the middleware starts and closes it.
        rules: method + path rules that give each request its category.
        stats: request counters for the status document (default: the controller's).
        page: the HTML page a refused browser gets (:mod:`.page`; None: JSON for everyone).
        bypass: who may pass where the mode refuses (:mod:`.bypass`); asked only on refusal.
        companions: what starts after the controller and closes before it (``start()`` and
            ``close()`` coroutines), such as the follower of the fleet's bypass.
    """

    def __init__(
        self,
        app: ASGIApp,
        controller: ModeController,
        rules: RouteRules = CONTEXT_SERVICES_RULES,
        stats: RequestStats | None = None,
        page: MaintenancePage | None = MaintenancePage(),  # noqa: B008 - immutable
        bypass: Bypass | None = None,
        companions: Iterable[Companion] = (),
    ) -> None:
        rules.check(controller.policy)
        self.app = app
        self.controller = controller
        self.rules = rules
        self.stats = stats if stats is not None else stats_for(controller)
        self._life = _ControllerLife(controller, tuple(companions))
        # Closes the open WebSockets a drain's target refuses, as the drain begins.
        self.sockets = OpenSockets(controller)
        self.refusals = RefusalAnswers(page, lambda: _page_facts(controller))
        # Kept even when it lets no one through yet: in a fleet, the fleet's bypass may.
        self.bypass = bypass

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # HTTP is handled here rather than in a method of its own: this runs on every request,
        # and one coroutine less per request is measurable (bench/README.md, item 2).
        if scope["type"] != "http":
            await self._other(scope, receive, send)
            return
        stats = self.stats
        stats.request()
        path = scope["path"]
        normal = normalise_path(path)
        try:
            if not self._life.started:
                await self._life.start()
            # The gate's admit itself (ModeController.admit only forwards to it).
            ticket = self.controller.gate.admit(self.rules.classify(scope["method"], normal))
        except ServerModeError as exc:  # refused, or the store could not load at first start
            bypassed = self._bypassing(scope, exc)
            if bypassed is None:
                # The answer's status is counted as it is sent (a hot path: see .page).
                stats.response(await self.refusals.send(scope, send, exc))
                return
            ticket = bypassed
        if normal is not path:
            # The app routes what was classified: the normal path, and a raw path to match.
            normalised = _with_path(scope, normal)
            if normalised is None:
                ticket.release()
                response = problem_response(scope, *_bad_path(scope))
                stats.response(response.status_code)
                await response(scope, receive, send)
                return
            scope = normalised

        started = False

        async def send_counted(message: Message) -> None:
            # The answer is counted as it begins; the request, until the app returns.
            nonlocal started
            if not started and message["type"] == "http.response.start":
                started = True
                stats.response(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_counted)
        except (Exception, asyncio.CancelledError):
            if not started and not _being_cancelled():
                # The app failed before answering: answer in the documented error body rather
                # than the server's bare 500; the error still propagates, to be logged.
                ticket.release()
                stats.response(Problem.INTERNAL_ERROR.status)
                with contextlib.suppress(Exception):
                    await internal_error_response(scope)(scope, receive, send)
            raise
        finally:
            ticket.release()

    async def _other(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "websocket":
            await self._websocket(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    def _bypassing(self, scope: Scope, refusal: ServerModeError) -> Ticket | None:
        """A ticket for a refused request that may bypass the mode (counted as bypassed)."""
        if self.bypass is None or not isinstance(refusal, Refused):
            return None
        if self.bypass.allows(scope) is None:
            return None
        try:
            return self.controller.gate.admit_anyway(refusal.category)
        except ServerModeError:  # its category is what the drain under way waits for
            return None

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        stats = self.stats
        stats.request()
        path = scope["path"]
        normal = normalise_path(path)
        try:
            await self._life.start()
            category = self.rules.classify("GET", normal)  # a WebSocket handshake is a GET
            ticket = self.controller.admit(category)
        except ServerModeError as exc:
            bypassed = self._bypassing(scope, exc)
            if bypassed is None:
                problem, description, headers = problem_for_exception(exc)
                await refuse_handshake(
                    scope, send, problem, description, headers, WS_TRY_AGAIN_LATER
                )
                stats.response(problem.status)
                return
            ticket = bypassed
        if normal is not path:
            normalised = _with_path(scope, normal)
            if normalised is None:
                ticket.release()
                problem, description = _bad_path(scope)
                await refuse_handshake(scope, send, problem, description, {}, WS_POLICY_VIOLATION)
                stats.response(problem.status)
                return
            scope = normalised
        socket = self.sockets.add(scope, send, category)
        try:
            await self.app(scope, receive, socket.send)
        except ClosedForSwitch:
            pass  # the app sent on a socket the gate closed, and let that end it: as it should
        finally:
            self.sockets.remove(socket)
            ticket.release()

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        saw_startup = False
        failure: Exception | None = None

        async def receive_starting(message_source: Receive = receive) -> Message:
            nonlocal saw_startup, failure
            message = await message_source()
            if message["type"] == "lifespan.startup":
                saw_startup = True
                try:
                    await self._life.start()
                except Exception as exc:
                    failure = exc
                    raise
            return message

        async def send_closing(message: Message) -> None:
            if message["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                await self._life.close()
            await send(message)

        try:
            await self.app(scope, receive_starting, send_closing)
        except Exception:
            if failure is not None:
                await send(_startup_failed(failure))
                return
            if saw_startup:
                raise
        if not saw_startup:
            # The app does not speak lifespan (it raised or returned at once): speak it alone.
            await self._own_lifespan(receive, send)

    async def _own_lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self._life.start()
                except Exception as exc:
                    await send(_startup_failed(exc))
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self._life.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


class Companion(Protocol):
    """Something that lives as long as the controller: started after it, closed before it."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...


class _ControllerLife:
    """Starts the controller exactly once (concurrent first requests wait for one start),
    then its companions; closes the companions, then the controller."""

    def __init__(self, controller: ModeController, companions: tuple[Companion, ...] = ()) -> None:
        self._controller = controller
        self._companions = companions
        self._lock = asyncio.Lock()
        self.started = False

    async def start(self) -> None:
        if self.started:
            return
        async with self._lock:
            if not self.started:
                await self._controller.start()
                for companion in self._companions:
                    await companion.start()
                self.started = True

    async def close(self) -> None:
        async with self._lock:
            if self.started:
                self.started = False
                for companion in reversed(self._companions):
                    await companion.close()
                await self._controller.close()


def _page_facts(controller: ModeController) -> tuple[str | None, datetime | None]:
    """What a maintenance page tells beyond the refusal: the reason, the window's end."""
    window = controller.window
    ends = window.until if window is not None and not window.pending else None
    return controller.reason, ends


def _being_cancelled() -> bool:
    """Whether this task is being cancelled (its client is gone), not just seeing the error."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _startup_failed(exc: Exception) -> Message:
    return {"type": "lifespan.startup.failed", "message": f"servermode could not start: {exc}"}


def _with_path(scope: Scope, normal: str) -> Scope | None:
    """The scope with ``normal`` as its path and a raw path to match, or None if none can.

    The raw path is normalised segment by segment as sent, so that an encoded slash stays
    encoded (``/files//a%2Fb`` is handed on as ``/files/a%2Fb``, path ``/files/a/b``). Where an
    encoded slash hides a ``.``, ``..`` or empty segment, the raw path and the decoded path
    resolve to different places (``/files/x%2F..%2Fsecret``): no raw path can say what was
    classified, and the request is refused.
    """
    scope = dict(scope)
    scope["path"] = normal
    raw = scope.get("raw_path")
    if raw is not None:
        candidate = _normal_raw_path(raw)
        if unquote(candidate.decode("latin-1")) == normal:
            scope["raw_path"] = candidate
            return scope
        if b"%2f" in raw.lower():
            return None
    # No raw path, or one that does not spell the path (a server's own idea of it): the
    # path, encoded.
    scope["raw_path"] = quote(normal).encode("ascii")
    return scope


def _normal_raw_path(raw: bytes) -> bytes:
    """``raw`` with its ``.``/``..`` segments resolved and empty ones dropped, escapes kept.

    The same rule as :func:`normalise_path`, applied to segments as sent (``%2e%2e`` is ``..``,
    ``a%2Fb`` one segment).
    """
    parts = raw.split(b"/")
    segments: list[bytes] = []
    for part in parts:
        segment = unquote_to_bytes(part) if b"%" in part else part
        if segment in (b"", b"."):
            continue
        if segment == b"..":
            if segments:
                segments.pop()
            continue
        segments.append(part)
    normal = b"/" + b"/".join(segments)
    if segments and unquote_to_bytes(parts[-1]) in (b"", b".", b".."):
        normal += b"/"
    return normal


def _bad_path(scope: Scope) -> tuple[Problem, str]:
    shown = scope.get("raw_path", b"").decode("latin-1")
    return (
        Problem.BAD_PARAMETER,
        f"bad path {shown!r}: an encoded slash (%2F) may not hide a '.', '..' or empty segment",
    )
