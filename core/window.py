"""Timed maintenance: a window that begins and ends by itself.

A :class:`Window` is a period of maintenance: ``start_at`` (when it begins by itself; None once
it has begun, or when it begins with the request) and ``until`` (when the server returns to
production by itself; None: no end). The controller keeps it with the state (it survives a
restart) and switches at its times, as actor ``schedule``.

Times are given as RFC 3339 (``2030-01-01T02:00:00Z``, a zone required) or as a duration
(``30m``, ``1h30m``, ``2d``, ``90s``): a ``start_at`` duration counts from now, an ``until``
duration from the window's start. :func:`check_window` refuses times in the past, an end
before the start, and anything more than :data:`MAX_AHEAD` away.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from .errors import ServerModeError
from .modes import Mode

__all__ = [
    "MAX_AHEAD",
    "WHEN_PATTERN",
    "InvalidWindow",
    "Window",
    "WindowEvent",
    "WindowTimer",
    "asked_window",
    "check_window",
    "due_event",
    "parse_duration",
    "parse_moment",
]

#: The furthest a window may begin or end from now: a year (and a day).
MAX_AHEAD = timedelta(days=366)
ACTOR = "schedule"

_DURATION = re.compile(r"(?:(\d{1,6})d)?(?:(\d{1,6})h)?(?:(\d{1,7})m)?(?:(\d{1,9})s)?")
#: What a window time may look like: a duration, or an RFC 3339 time with its zone. The HTTP
#: API's description gives this very pattern.
WHEN_PATTERN = (
    r"^(([0-9]{1,6}d)?([0-9]{1,6}h)?([0-9]{1,7}m)?([0-9]{1,9}s)?"
    r"|[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}([.][0-9]{1,6})?)?"
    r"(Z|[+-][0-9]{2}:[0-9]{2}))$"
)
_WHEN = re.compile(WHEN_PATTERN)
_UNITS = ("days", "hours", "minutes", "seconds")


class InvalidWindow(ServerModeError, ValueError):
    """A window time that cannot be, or that servermode refuses; the message says why."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"bad {field}: {message}")


@dataclass(frozen=True, slots=True)
class Window:
    """A maintenance window; ``reason`` is the one given when it was asked for."""

    start_at: datetime | None = None
    until: datetime | None = None
    reason: str | None = None

    @property
    def pending(self) -> bool:
        """Not begun yet: it begins by itself at ``start_at``."""
        return self.start_at is not None

    def begun(self) -> Window:
        """The window once it has begun (its start is no longer ahead)."""
        return Window(None, self.until, self.reason)

    def next_event(self) -> datetime | None:
        return self.start_at if self.start_at is not None else self.until

    def fields(self) -> dict[str, str | None]:
        """Its times as ISO text, for a transition record."""
        return {
            "start_at": self.start_at.isoformat() if self.start_at is not None else None,
            "until": self.until.isoformat() if self.until is not None else None,
        }

    def to_dict(self) -> dict[str, Any]:
        """As plain JSON with wall-clock seconds (the fleet's time unit)."""
        return {
            "start_at": self.start_at.timestamp() if self.start_at is not None else None,
            "until": self.until.timestamp() if self.until is not None else None,
            "reason": self.reason,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Window | None:
        if not data:
            return None
        start_at, until = data.get("start_at"), data.get("until")
        return cls(
            datetime.fromtimestamp(float(start_at), UTC) if start_at is not None else None,
            datetime.fromtimestamp(float(until), UTC) if until is not None else None,
            data.get("reason"),
        )


@dataclass(frozen=True, slots=True)
class WindowEvent:
    """What a window asks for once one of its times has come: switch to ``target``, after
    which ``window`` is the one in force."""

    target: Mode
    window: Window | None
    reason: str | None


def due_event(window: Window | None, now: datetime) -> WindowEvent | None:
    """The switch ``window`` asks for at ``now`` (its end first), or None before its times."""
    if window is None:
        return None
    if window.until is not None and window.until <= now:
        return WindowEvent(Mode.PRODUCTION, None, "the maintenance window ended")
    if window.start_at is not None and window.start_at <= now:
        return WindowEvent(Mode.MAINTENANCE, window.begun(), window.reason)
    return None


def asked_window(
    target: Mode,
    start_at: datetime | None,
    until: datetime | None,
    reason: str | None,
    now: datetime,
) -> Window | None:
    """The window a mode request asks for (None without ``until`` or ``start_at``), checked:
    InvalidWindow for one that is not maintenance, or refused by :func:`check_window`."""
    if until is None and start_at is None:
        return None
    if target is not Mode.MAINTENANCE:
        raise InvalidWindow(
            "until" if until is not None else "start_at",
            "a window is a period of maintenance: ask for it with mode maintenance",
        )
    window = Window(start_at, until, reason)
    check_window(window, now)
    return window


def parse_duration(text: str) -> timedelta | None:
    """``30m``, ``1h30m``, ``2d``, ``90s`` as a timedelta; None if ``text`` is not one."""
    match = _DURATION.fullmatch(text)
    if match is None or not any(match.groups()):
        return None
    try:
        parts = zip(_UNITS, match.groups(), strict=True)
        return timedelta(**{unit: int(n) for unit, n in parts if n})
    except OverflowError:
        return timedelta.max


def parse_moment(field: str, text: Any, base: datetime) -> datetime:
    """An RFC 3339 time, or a duration after ``base``; InvalidWindow otherwise."""
    if not isinstance(text, str) or not text or len(text) > 64 or not _WHEN.match(text):
        shown = _shown(text) if isinstance(text, str) else type(text).__name__
        raise InvalidWindow(
            field,
            f'{shown} is neither an RFC 3339 time with a zone ("2030-01-01T02:00:00Z") nor '
            f'a duration ("30m", "1h30m", "2d")',
        )
    duration = parse_duration(text)
    if duration is not None:
        if duration > MAX_AHEAD:
            raise InvalidWindow(field, f"{text!r} is more than {MAX_AHEAD.days} days")
        return base + duration
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:  # the shape of a time, not a time (month 13, Feb 30...)
        raise InvalidWindow(field, f"{_shown(text)} is not a valid time") from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise InvalidWindow(field, f"{_shown(text)} has no time zone (add Z or an offset)")
    return moment.astimezone(UTC)


def check_window(window: Window, now: datetime) -> None:
    """Refuse a window in the past, ending before it begins, or too far ahead."""
    begins = window.start_at if window.start_at is not None else now
    if window.start_at is not None and window.start_at <= now:
        raise InvalidWindow("start_at", f"{_iso(window.start_at)} is in the past")
    if window.until is not None:
        if window.until <= now:
            raise InvalidWindow("until", f"{_iso(window.until)} is in the past")
        if window.until <= begins:
            raise InvalidWindow(
                "until", f"{_iso(window.until)} is not after the start {_iso(begins)}"
            )
    for field, moment in (("start_at", window.start_at), ("until", window.until)):
        if moment is not None and moment - now > MAX_AHEAD:
            raise InvalidWindow(field, f"{_iso(moment)} is more than {MAX_AHEAD.days} days ahead")


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _shown(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:40] + "...")


class WindowTimer:
    """Calls ``fire`` once the wall clock reaches a moment (re-checked when it wakes)."""

    def __init__(self, fire: Callable[[], Any], clock: Callable[[], datetime]) -> None:
        self._fire = fire
        self._clock = clock
        self._handle: asyncio.TimerHandle | None = None

    def arm(self, moment: datetime | None, *, at_least: float = 0.0) -> None:
        self.cancel()
        if moment is None:
            return
        loop = asyncio.get_running_loop()
        delay = max(at_least, (moment - self._clock()).total_seconds())
        # Long sleeps wake early and look again: the wall clock may have been set meanwhile.
        self._handle = loop.call_later(min(delay, 3600.0), self._wake, moment)

    def _wake(self, moment: datetime) -> None:
        self._handle = None
        if self._clock() < moment:
            self.arm(moment)
            return
        self._fire()

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
