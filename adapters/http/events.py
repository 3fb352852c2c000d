"""``GET /server/events``: a server-sent event stream of status snapshots and transition records.

What a stream sends (``text/event-stream``; every ``data`` is one line of JSON)::

    retry: 1000                      reconnect after a second when the stream ends
    event: hello                     first: who the token is, and whether it may switch
    event: status                    the status document of GET /server/status, when it changed
    event: transition  (id: N)       a transition record, as GET /server/transitions lists them
    : keepalive                      a comment, every 15 s without anything else
    event: shutdown                  last: the service is stopping

A status is sent at once when a drain begins (the controller's drain listener) and with every
record (the audit feed), every half second while a drain is under way (its progress), and
otherwise when the mode, the state or the in-flight counts changed, looked at once a second.

A stream is in category ``server``: never counted, so it never holds up a drain. It ends when
the service stops: uvicorn waits for open responses *before* it runs the lifespan shutdown, so
the lifespan would be too late; :func:`run_server` ends the streams as soon as a stop begins.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import uvicorn
from servermode.core import State, TransitionRecord

__all__ = ["EVENT_STREAM_HEADERS", "EventHub", "run_server", "sse"]

#: Milliseconds a client waits before reconnecting to an ended stream (the ``retry`` field).
RECONNECT_MS = 1000
#: Records a stream may hold unsent before it is ended (a client that does not read).
MAX_PENDING = 1000
EVENT_STREAM_HEADERS = {
    "Cache-Control": "no-store",
    "X-Accel-Buffering": "no",  # a buffering proxy would hold the events back
}


def sse(event: str, data: Any, id: int | None = None) -> bytes:
    """One event; ``data`` as one line of JSON (json.dumps escapes every line break)."""
    head = f"event: {event}\n" + (f"id: {id}\n" if id is not None else "")
    return f"{head}data: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


class _Subscriber:
    """One open stream: the records not yet sent, and what wakes it."""

    __slots__ = ("closed", "loop", "pending", "wakeup")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.pending: deque[TransitionRecord] = deque()
        self.wakeup = asyncio.Event()
        self.closed = False

    def push(self, record: TransitionRecord) -> None:
        def put() -> None:
            if len(self.pending) >= MAX_PENDING:
                self.closed = True  # it will reconnect and read the history
            else:
                self.pending.append(record)
            self.wakeup.set()

        self._on_loop(put)

    def wake(self) -> None:
        self._on_loop(self.wakeup.set)

    def close(self) -> None:
        def shut() -> None:
            self.closed = True
            self.wakeup.set()

        self._on_loop(shut)

    def take(self) -> list[TransitionRecord]:
        records = list(self.pending)
        self.pending.clear()
        return records

    async def wait(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self.wakeup.wait()
        self.wakeup.clear()

    def _on_loop(self, call: Callable[[], None]) -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            call()
        else:
            with contextlib.suppress(RuntimeError):  # the stream's loop is closed: it is gone
                self.loop.call_soon_threadsafe(call)


class EventHub:
    """Fans status snapshots and transition records out to the open event streams.

    Parameters:
        drain_interval: seconds between snapshots while a drain is under way.
        steady_interval: seconds between looks for a change otherwise.
        keepalive: seconds of silence after which a comment is sent.
    """

    def __init__(
        self,
        *,
        drain_interval: float = 0.5,
        steady_interval: float = 1.0,
        keepalive: float = 15.0,
    ) -> None:
        self.drain_interval = drain_interval
        self.steady_interval = steady_interval
        self.keepalive = keepalive
        self.closed = False
        self._subscribers: set[_Subscriber] = set()

    @property
    def open_streams(self) -> int:
        return len(self._subscribers)

    def publish(self, record: TransitionRecord) -> None:
        """Send ``record`` (and a fresh status) to every open stream."""
        for subscriber in tuple(self._subscribers):
            subscriber.push(record)

    def wake(self, state: State | None = None) -> None:
        """Have every stream look at the status now (a drain listener: ``state`` is unused)."""
        for subscriber in tuple(self._subscribers):
            subscriber.wake()

    def close(self) -> None:
        """End every stream (each sends ``shutdown`` first); streams opened later end at once."""
        self.closed = True
        for subscriber in tuple(self._subscribers):
            subscriber.close()

    async def stream(
        self, hello: Mapping[str, Any], snapshot: Callable[[], dict[str, Any]]
    ) -> AsyncIterator[bytes]:
        """The chunks of one stream until the client leaves or the hub closes.

        ``hello`` is the first event's data; ``snapshot`` returns the status document.
        """
        subscriber = _Subscriber(asyncio.get_running_loop())
        self._subscribers.add(subscriber)
        try:
            yield f"retry: {RECONNECT_MS}\n\n".encode() + sse("hello", dict(hello))
            last_key: tuple[Any, ...] | None = None
            last_sent = time.monotonic()
            while True:
                # Read before taking the records: what was published before a close is sent.
                ending = subscriber.closed or self.closed
                records = subscriber.take()
                chunk = b"".join(sse("transition", r.to_dict(), r.id) for r in records)
                document = snapshot()
                key = _change_key(document)
                draining = State(document["state"]).is_draining
                if records or draining or key != last_key:
                    chunk += sse("status", document)
                    last_key = key
                elif time.monotonic() - last_sent >= self.keepalive:
                    chunk = b": keepalive\n\n"
                if chunk:
                    yield chunk
                    last_sent = time.monotonic()
                if ending:
                    break
                await subscriber.wait(self.drain_interval if draining else self.steady_interval)
            if self.closed:
                yield sse("shutdown", {"description": "the service is stopping"})
        finally:
            self._subscribers.discard(subscriber)


def _change_key(document: Mapping[str, Any]) -> tuple[Any, ...]:
    """What a stream reports a change of: not the clock, the memory or the request counters."""
    return (
        document["state"],
        document["since"],
        document.get("deadline"),
        tuple(sorted(document["in_flight"].items())),
        document["timeout_policy"],
    )


class _StreamEndingServer(uvicorn.Server):
    """uvicorn's server, ending the event streams as soon as a stop begins."""

    def __init__(self, config: uvicorn.Config, on_stop: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_stop = on_stop

    async def shutdown(self, sockets: Any = None) -> None:
        # uvicorn waits for the open responses first and runs the lifespan shutdown after:
        # a stream never ends by itself, so it is ended here, before that wait.
        self._on_stop()
        await super().shutdown(sockets)


#: uvicorn's exit status when the server could not start.
STARTUP_FAILURE = 3


def run_server(app: Any, on_stop: Callable[[], None], **options: Any) -> None:
    """``uvicorn.run(app, **options)`` for one process, calling ``on_stop`` when a stop begins."""
    server = _StreamEndingServer(uvicorn.Config(app, **options), on_stop)
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    if not server.started:
        sys.exit(STARTUP_FAILURE)
