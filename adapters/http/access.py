"""The access log: one line per HTTP answer, rendered without the logging machinery.

uvicorn's own access log creates a ``LogRecord`` per request, formats it through the logging
formatter (structlog's renderer, in ``servermode serve``) and writes it with one system call;
that costs about as much as the gated request itself (issue 14). This one renders the line
with one f-string, in the same shape as the service's other log lines (JSON, or the console
renderer's look), and hands it to ``write``: the CLI's writer batches the lines of one event
loop iteration into one write (:class:`servermode.adapters.cli.logging.LineBuffer`).

The line says what uvicorn's says: client, request line, status. It is written when the
answer begins (as uvicorn does), by :class:`AccessLogMiddleware`, which ``servermode serve``
puts outside the gate so that it sees every answer, the gate's refusals included. With the
access log off there is no such layer at all.
"""

from __future__ import annotations

import functools
import math
import re
import time
from collections.abc import Callable
from json.encoder import encode_basestring, encode_basestring_ascii
from urllib.parse import quote

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["ACCESS_EVENT", "ACCESS_LOGGER", "AccessLog", "AccessLogMiddleware", "request_line"]

ACCESS_LOGGER = "servermode.access"
#: The JSON line's ``event``: what structlog's ``event`` key holds for other lines.
ACCESS_EVENT = "http_request"


class AccessLog:
    """Renders one line per answer and hands it to ``write``.

    Parameters:
        write: takes one rendered line (without its line end).
        as_json: JSON lines (the service's JSON log format) or the console format.
        clock: the time of each line, as a POSIX timestamp.
    """

    __slots__ = ("_clock", "_render", "_write")

    def __init__(
        self,
        write: Callable[[str], None],
        *,
        as_json: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._write = write
        self._clock = clock
        self._render = _json_line if as_json else _console_line

    def __call__(self, scope: Scope, status: int) -> None:
        self._write(self._render(self._clock(), scope, status))


class AccessLogMiddleware:
    """Calls ``log(scope, status)`` as each HTTP answer of ``app`` begins (a pure ASGI layer)."""

    def __init__(self, app: ASGIApp, log: Callable[[Scope, int], None]) -> None:
        self.app = app
        self.log = log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        log = self.log

        async def send_logged(message: Message) -> None:
            if message["type"] == "http.response.start":
                log(scope, message["status"])
            await send(message)

        await self.app(scope, receive, send_logged)


def request_line(scope: Scope) -> tuple[str, str]:
    """The client (``host:port``, empty when unknown) and the request line, as uvicorn's access
    log writes them (the path percent-quoted)."""
    client = scope.get("client")
    address = f"{client[0]}:{client[1]}" if client else ""
    path = scope["path"]
    if not _PLAIN_PATH.fullmatch(path):
        path = quote(path)
    query = scope.get("query_string", b"")
    if query:
        path = f"{path}?{query.decode('ascii', 'backslashreplace')}"
    return address, f"{scope['method']} {path} HTTP/{scope.get('http_version', '1.1')}"


# What urllib.parse.quote leaves as it is: such paths (nearly all) skip the call.
_PLAIN_PATH = re.compile(r"[A-Za-z0-9_.~/-]*")


def _json_line(at: float, scope: Scope, status: int) -> str:
    address, line = request_line(scope)
    # The same keys as the service's other JSON lines (structlog: event, level, logger,
    # timestamp), laid out as structlog's JSONRenderer lays them out.
    return (
        f'{{"event": "{ACCESS_EVENT}", "client": {encode_basestring_ascii(address)}, '
        f'"request": {encode_basestring_ascii(line)}, "status": {status}, '
        f'"level": "info", "logger": "{ACCESS_LOGGER}", "timestamp": "{_iso(at)}"}}'
    )


def _console_line(at: float, scope: Scope, status: int) -> str:
    address, line = request_line(scope)
    # As structlog's ConsoleRenderer lays out a line (without colours): time, level, event,
    # then the fields. Control characters are escaped, as in the JSON line.
    request = encode_basestring(line)[1:-1]
    return (
        f"{_iso(at)} [info     ] {ACCESS_EVENT:<30} [{ACCESS_LOGGER}] client={address} "
        f"request='{request}' status={status}"
    )


def _iso(at: float) -> str:
    """``at`` in UTC as structlog's ``TimeStamper(fmt="iso", utc=True)`` writes it."""
    second = math.floor(at)
    micro = round((at - second) * 1e6)
    if micro >= 1_000_000:
        second, micro = second + 1, micro - 1_000_000
    # datetime.isoformat leaves out a fraction of zero.
    return f"{_second(second)}.{micro:06d}Z" if micro else f"{_second(second)}Z"


@functools.lru_cache(maxsize=4)
def _second(second: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
