"""A hand-driven ASGI peer for middleware tests: scripted receive, recorded send."""

from __future__ import annotations

import asyncio
from typing import Any

Message = dict[str, Any]


def http_scope(method: str = "GET", path: str = "/", **extra: Any) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
        **extra,
    }


def ws_scope(path: str = "/", **extra: Any) -> dict[str, Any]:
    scope = http_scope(path=path)
    del scope["method"]
    scope.update(type="websocket", scheme="ws", subprotocols=[], **extra)
    return scope


class Peer:
    """Feeds ``incoming`` messages to the app, then waits on ``more``; records what is sent."""

    def __init__(self, *incoming: Message) -> None:
        self.queue: asyncio.Queue[Message] = asyncio.Queue()
        for message in incoming:
            self.queue.put_nowait(message)
        self.sent: list[Message] = []
        self.on_send: list[Any] = []

    async def receive(self) -> Message:
        return await self.queue.get()

    async def send(self, message: Message) -> None:
        self.sent.append(message)
        for hook in self.on_send:
            hook(message)

    def types(self) -> list[str]:
        return [m["type"] for m in self.sent]

    @property
    def status(self) -> int:
        return next(m["status"] for m in self.sent if m["type"] == "http.response.start")

    @property
    def headers(self) -> dict[str, str]:
        start = next(m for m in self.sent if m["type"] == "http.response.start")
        return {k.decode().lower(): v.decode() for k, v in start["headers"]}

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent if m["type"] == "http.response.body")
