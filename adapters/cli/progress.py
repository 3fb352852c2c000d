"""What ``servermode set --wait`` shows while a drain runs, read from the status document.

On a terminal one line is kept up to date in place (the requests in flight of each category
the drain waits for, and the time left); elsewhere (a log, a pipe, CI) a plain line is
written only when something changes, so that a long drain does not fill the log with the
same line twice a second.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from datetime import datetime
from typing import Any, TextIO

__all__ = ["DrainProgress", "describe_drain", "seconds_between"]

# Back to the start of the line, and erase it: the live line is rewritten in place.
_REWRITE = "\r\x1b[K"


def seconds_between(start: str, end: str) -> float:
    """Seconds from ``start`` to ``end`` (status document times), never negative."""

    def parse(text: str) -> datetime:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))

    return max(0.0, (parse(end) - parse(start)).total_seconds())


def describe_drain(document: Mapping[str, Any]) -> tuple[tuple[Any, ...], str] | None:
    """(what changed, the line) of a draining status document; None when no drain runs.

    The requests shown are those of the categories the drain waits for (the document's
    ``waiting_for`` when it has one; otherwise every counted category), with a count.
    """
    target = document.get("target")
    if target is None:
        return None
    in_flight: Mapping[str, int] = document.get("in_flight") or {}
    waited = document.get("waiting_for")
    counts = {
        category: count
        for category, count in in_flight.items()
        if count and (waited is None or category in waited)
    }
    busy = ", ".join(f"{category} {count}" for category, count in counts.items()) or "none"
    left = seconds_between(document["system_time"], document["deadline"])
    line = f"draining to {target}: {sum(counts.values())} in flight ({busy}), {left:.1f}s left"
    return (target, tuple(sorted(counts.items()))), line


class DrainProgress:
    """Shows the drain's progress on ``stream``: live on a terminal, by change elsewhere."""

    def __init__(self, stream: TextIO, live: bool | None = None) -> None:
        self.stream = stream
        self.live = stream.isatty() if live is None else live
        self._last: object = None
        self._showing = False

    def show(self, document: Mapping[str, Any]) -> None:
        """Show the drain a status document describes (nothing when none runs)."""
        described = describe_drain(document)
        if described is not None:
            self._put(*described)

    def problem(self, text: str) -> None:
        """Show that the status could not be read (once per different problem off a terminal)."""
        self._put(("problem", text), f"status unavailable: {text}")

    def finish(self) -> None:
        """Erase the live line, so that what follows starts on a clean line."""
        if self._showing:
            self.stream.write(_REWRITE)
            self.stream.flush()
            self._showing = False

    def _put(self, key: object, line: str) -> None:
        if self.live:
            # A line longer than the terminal would wrap, and \r would rewrite only its end.
            width = shutil.get_terminal_size().columns - 1
            self.stream.write(_REWRITE + line[:width])
            self._showing = True
        elif key != self._last:
            self.stream.write(line + "\n")
        else:
            return
        self._last = key
        self.stream.flush()
