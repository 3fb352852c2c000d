"""Read a server-sent event stream in a background thread, as a script with curl -N would."""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx2

Event = tuple[str, Any]


class EventReader:
    """Reads ``GET url`` (text/event-stream) into a queue of (event name, parsed data).

    Comments arrive as ("comment", text), the end of the stream as ("closed", None). The
    stream is ended by the server (at shutdown, or ``Monitor.close()``); ``join`` waits for it.
    """

    def __init__(self, url: str, token: str | None = None) -> None:
        self.url = url
        self.headers = {"Accept": "text/event-stream"}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        self.events: queue.Queue[Event] = queue.Queue()
        self.status_code: int | None = None
        self.body: bytes = b""
        self.error: BaseException | None = None
        self._answered = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sse-reader", daemon=True)
        self._thread.start()
        if not self._answered.wait(10):
            raise AssertionError(f"no answer from {url}")

    def _run(self) -> None:
        try:
            timeout = httpx2.Timeout(10, read=60)
            with httpx2.stream("GET", self.url, headers=self.headers, timeout=timeout) as response:
                self.status_code = response.status_code
                self.content_type = response.headers.get("content-type", "")
                if response.status_code != 200:
                    self.body = response.read()
                    return
                self._answered.set()
                name, data = "message", []
                for line in response.iter_lines():
                    if not line:
                        if data:
                            self.events.put((name, json.loads("\n".join(data))))
                        name, data = "message", []
                    elif line.startswith(":"):
                        self.events.put(("comment", line[1:].strip()))
                    else:
                        field, _, value = line.partition(":")
                        value = value[1:] if value.startswith(" ") else value
                        if field == "event":
                            name = value
                        elif field == "data":
                            data.append(value)
        except BaseException as exc:  # reported by next()
            self.error = exc
        finally:
            self._answered.set()
            self.events.put(("closed", None))

    def next(
        self, name: str, where: Callable[[Any], bool] = lambda data: True, timeout: float = 5
    ) -> Any:
        """The data of the next ``name`` event that ``where`` accepts (others are skipped)."""
        deadline = time.monotonic() + timeout
        skipped: list[str] = []
        while True:
            left = deadline - time.monotonic()
            try:
                event, data = self.events.get(timeout=max(0.0, left))
            except queue.Empty:
                raise AssertionError(f"no {name} event within {timeout}s; saw {skipped}") from None
            if event == name and where(data):
                return data
            if event == "closed" and name != "closed":
                raise AssertionError(f"the stream ended before a {name} event ({self.error!r})")
            skipped.append(event)

    def join(self, timeout: float = 5) -> None:
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise AssertionError("the event stream did not end")
