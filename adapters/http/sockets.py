"""Open WebSockets by category: refused handshakes, and sockets closed when a drain begins.

A drain waits for the requests in flight whose category its target refuses; a WebSocket may
stay open for hours, so waiting for it would make every drain time out, and a switch forced at
the timeout would leave it serving in a mode that refuses it. Instead, as a drain begins (the
gate already refusing new requests), the sockets of the categories the target refuses are
closed with 1012 (Service Restart); each still counts until its app returns, which a closed
socket makes it do at once. What was closed is the transition record's ``closed``.

The app's sends go through the socket, one at a time, so that the close never lands in the
middle of one; once the gate closes it, the app's data sends raise :class:`ClosedForSwitch`
(and its receive gets the server's ``websocket.disconnect``); its accept, close or handshake
refusal, which would come after the gate's own, are dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping

from servermode.core import ModeController, Refused, State
from starlette.types import Message, Scope, Send

from .problems import Problem, problem_for_exception, problem_response

__all__ = [
    "WS_POLICY_VIOLATION",
    "WS_SERVICE_RESTART",
    "WS_TRY_AGAIN_LATER",
    "ClosedForSwitch",
    "OpenSocket",
    "OpenSockets",
    "refuse_handshake",
]

#: WebSocket close codes (RFC 6455 registry).
WS_POLICY_VIOLATION = 1008  # a path the gate refuses (see middleware)
WS_SERVICE_RESTART = 1012  # an open socket closed because the mode is switching
WS_TRY_AGAIN_LATER = 1013  # a handshake the mode refuses, where no HTTP answer can be sent

#: The ASGI extension that lets an app answer a handshake with an HTTP response.
DENIAL_RESPONSE = "websocket.http.response"


class ClosedForSwitch(ConnectionError):
    """Raised to an app that sends on a WebSocket the gate closed for a mode switch.

    An ``OSError``, as a send to a client that went away is: Starlette's ``WebSocket`` turns it
    into ``WebSocketDisconnect``.
    """


async def refuse_handshake(
    scope: Scope,
    send: Send,
    problem: Problem,
    description: str,
    headers: Mapping[str, str],
    close_code: int,
) -> None:
    """Refuse a WebSocket handshake with an HTTP answer (the error body) where the server
    offers one, else by closing before accepting (which servers answer 403)."""
    if DENIAL_RESPONSE in (scope.get("extensions") or {}):
        response = problem_response(scope, problem, description, headers)
        await send(
            {
                "type": "websocket.http.response.start",
                "status": response.status_code,
                "headers": response.raw_headers,
            }
        )
        await send({"type": "websocket.http.response.body", "body": response.body})
    else:
        await send({"type": "websocket.close", "code": close_code, "reason": ""})


class OpenSocket:
    """One WebSocket the gate admitted; its app sends through :meth:`send`."""

    __slots__ = ("_lock", "_send", "accepted", "category", "closing", "ended", "scope")

    def __init__(self, scope: Scope, send: Send, category: str) -> None:
        self.scope = scope
        self.category = category
        self._send = send
        self._lock = asyncio.Lock()
        self.accepted = False  # the app accepted the handshake
        self.ended = False  # the app closed or refused it, or returned: not the gate's to close
        self.closing = False  # the gate closes it: the app sends no more

    async def send(self, message: Message) -> None:
        async with self._lock:
            kind = message["type"]
            if self.closing:
                # The gate has closed it, or is about to: data cannot go out any more, and an
                # accept, a close or a refusal of the app's would come after the gate's own.
                if kind == "websocket.send":
                    raise ClosedForSwitch("the server closed this WebSocket: the mode is switching")
                return
            # Marked before the send: a close decided during it must know what it follows.
            if kind == "websocket.accept":
                self.accepted = True
            elif kind in ("websocket.close", "websocket.http.response.start"):
                self.ended = True
            await self._send(message)

    def begin_close(self) -> bool:
        """Stop the app's sends, if the socket is still the gate's to close; say whether."""
        if self.ended or self.closing:
            return False
        self.closing = True
        return True

    async def close(self, refused: Refused) -> None:
        """Close the socket (1012), or refuse the handshake the app has not accepted yet."""
        async with self._lock:  # after a send under way, never inside it
            if self.ended:  # its app returned meanwhile, and the server closed it
                return
            self.ended = True
            # The connection may be gone already; the server's complaint is of no use here.
            with contextlib.suppress(Exception):
                if self.accepted:
                    target = refused.state.target
                    reason = f"switching to {target} mode" if target else "switching mode"
                    await self._send(
                        {"type": "websocket.close", "code": WS_SERVICE_RESTART, "reason": reason}
                    )
                else:
                    problem, description, headers = problem_for_exception(refused)
                    await refuse_handshake(
                        self.scope, self._send, problem, description, headers, WS_TRY_AGAIN_LATER
                    )


class OpenSockets:
    """The open WebSockets of each category of ``controller``'s policy.

    Registered with the controller as a drain listener: when a drain begins it closes the
    sockets whose category the drain's target refuses, and returns how many per category.
    """

    def __init__(self, controller: ModeController) -> None:
        self._controller = controller
        self._by_category: dict[str, set[OpenSocket]] = {
            category: set() for category in controller.policy.categories
        }
        self._closing: set[asyncio.Task[None]] = set()  # held until done: tasks are weak
        controller.add_drain_listener(self.close_refused)

    def add(self, scope: Scope, send: Send, category: str) -> OpenSocket:
        socket = OpenSocket(scope, send, category)
        self._by_category[category].add(socket)
        return socket

    def remove(self, socket: OpenSocket) -> None:
        """Forget ``socket``: its app returned."""
        socket.ended = True
        self._by_category[socket.category].discard(socket)

    def close_refused(self, state: State) -> dict[str, int]:
        """Close the sockets that the target of draining ``state`` refuses (a drain listener).

        Called on the event loop as the drain begins: the sends stop now, the closes are
        sent as soon as each socket's send under way (if any) is done.
        """
        target = state.target
        if target is None:
            return {}
        policy = self._controller.policy
        retry_after = self._controller.retry_after()
        loop = asyncio.get_running_loop()
        closed: dict[str, int] = {}
        for category, sockets in self._by_category.items():
            if not sockets or policy.admits(target.state, category):
                continue
            refused = Refused(state, category, retry_after)
            for socket in sockets:
                if socket.begin_close():
                    closed[category] = closed.get(category, 0) + 1
                    task = loop.create_task(socket.close(refused))
                    self._closing.add(task)
                    task.add_done_callback(self._closing.discard)
        return closed
