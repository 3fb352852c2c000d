"""The status document of ``GET /server/status``: Context Services fields plus the drain.

Context Services reports JVM heap figures; a Python process has no heap limit, so the four
memory figures (KB) are read from the process itself (``/proc/self/status`` on Linux):

- ``max_memory``: the peak resident set size (VmHWM),
- ``allocated_memory``: the resident set size now (VmRSS),
- ``used_memory``: the anonymous part of it, what the process allocated itself (RssAnon),
- ``free_memory``: the rest of the resident set (file-backed pages the kernel can reclaim).

Elsewhere ``resource.getrusage`` gives the peak, used for all but ``free_memory``.

The memory figures are read at most once per :data:`MEMORY_MAX_AGE` second and reused in
between: reading ``/proc`` costs several times the rest of the document, and a status poller
under load would otherwise spend most of each request there (``bench/status_throughput.py``).
"""

from __future__ import annotations

import functools
import json
import math
import resource
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from servermode.core import AdmissionPolicy, Mode, ModeController, State, TimeoutPolicy, Window
from servermode.core.fleet import FleetController

from ..version import VERSION
from .bypass import Bypass
from .stats import RequestStats

__all__ = [
    "MEMORY_MAX_AGE",
    "MemoryFigures",
    "bypass_document",
    "fleet_document",
    "format_time",
    "format_timestamp",
    "process_memory_kb",
    "status_document",
    "status_json",
    "window_document",
]

PROC_STATUS = Path("/proc/self/status")
#: Seconds the status document reuses the process's memory figures before reading them again.
MEMORY_MAX_AGE = 1.0


def format_time(moment: datetime | None) -> str | None:
    """``yyyy-MM-ddTHH:mm:ss.SSSZ`` in UTC, as Context Services writes times."""
    if moment is None:
        return None
    return _format_utc(moment)


@functools.lru_cache(maxsize=32)
def _format_utc(moment: datetime) -> str:
    # Cached: a status document formats the same start and "since" times on every request.
    # "milliseconds" truncates, as Context Services does.
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def format_timestamp(at: float | None) -> str | None:
    """:func:`format_time` of a POSIX timestamp (seconds since the epoch, UTC).

    For the times that change on every request (the system time, the last request): the
    date and time of day are formatted once per second, the milliseconds (truncated) appended.
    """
    if at is None:
        return None
    # Microseconds rounded half to even, as datetime.fromtimestamp does, then truncated.
    second = math.floor(at)
    micro = round((at - second) * 1e6)
    if micro >= 1_000_000:
        second, micro = second + 1, micro - 1_000_000
    return f"{_format_second(second)}.{micro // 1000:03d}Z"


@functools.lru_cache(maxsize=4)
def _format_second(second: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))


def process_memory_kb(proc_status: Path = PROC_STATUS) -> dict[str, int]:
    """The four memory figures of the status document, in KB (see the module docstring)."""
    fields = _read_proc_status(proc_status)
    if {"VmHWM", "VmRSS", "RssAnon"} <= fields.keys():
        resident, anonymous = fields["VmRSS"], fields["RssAnon"]
        return {
            "max_memory": max(fields["VmHWM"], resident),
            "allocated_memory": resident,
            "free_memory": max(0, resident - anonymous),
            "used_memory": anonymous,
        }
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if sys.platform == "darwin":  # pragma: no cover - bytes there, KB on Linux
        peak //= 1024
    return {"max_memory": peak, "allocated_memory": peak, "free_memory": 0, "used_memory": peak}


class MemoryFigures:
    """:func:`process_memory_kb`, read again only when the last reading is ``max_age`` old."""

    def __init__(
        self,
        max_age: float = MEMORY_MAX_AGE,
        read: Callable[[], dict[str, int]] = process_memory_kb,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_age = max_age
        self._read = read
        self._clock = clock
        self._lock = threading.Lock()
        self._figures: dict[str, int] = {}
        self._read_at = -math.inf

    def __call__(self) -> dict[str, int]:
        now = self._clock()
        if now - self._read_at >= self.max_age:
            with self._lock:
                if now - self._read_at >= self.max_age:
                    self._figures = self._read()
                    self._read_at = now
        return self._figures


_memory = MemoryFigures()


def _read_proc_status(path: Path) -> dict[str, int]:
    try:
        text = path.read_text()
    except OSError:
        return {}
    fields: dict[str, int] = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        parts = rest.split()
        if len(parts) == 2 and parts[1] == "kB" and parts[0].isdigit():
            fields[name] = int(parts[0])
    return fields


def window_document(window: Window | None) -> dict[str, Any]:
    """A maintenance window as the status shows it: its start (null once begun), its end."""
    if window is None:
        return {"start_at": None, "until": None, "reason": None}
    return {
        "start_at": format_time(window.start_at),
        "until": format_time(window.until),
        "reason": window.reason,
    }


def status_document(
    controller: ModeController, stats: RequestStats, now: float | None = None
) -> dict[str, Any]:
    """Everything ``GET /server/status`` answers, as JSON-ready values.

    ``now`` is the system time as a POSIX timestamp (default: the clock's).
    """
    status = controller.status()
    document: dict[str, Any] = {
        "version": VERSION,
        "system_time": format_timestamp(time.time() if now is None else now),
        "mode": status.mode.value,
        "started": format_time(stats.started),
        "last_request": format_timestamp(stats.last_request_timestamp),
        **_memory(),
        "request_today": stats.requests,
        "client_errors_today": stats.client_errors,
        "server_errors_today": stats.server_errors,
        "state": status.state.value,
        "since": format_time(status.since),
        "in_flight": status.in_flight,
        "drain_timeout": status.drain_timeout,
        "timeout_policy": status.timeout_policy.value,
        "reason": status.reason,
        "bypassed": controller.gate.bypassed(),
        "lame_duck": status.lame_duck,
    }
    if status.lame_duck_until is not None:
        document["lame_duck_until"] = format_time(status.lame_duck_until)
    if status.window is not None:
        document["window"] = window_document(status.window)
    if status.target is not None:
        document["target"] = status.target.value
        document["drain_started"] = format_time(status.drain_started)
        document["deadline"] = format_time(status.deadline)
        document["waiting_for"] = list(controller.policy.outgoing(status.state))
    if isinstance(controller, FleetController):
        document["fleet"] = fleet_document(controller)
    return document


def _wall(seconds: float | None) -> str | None:
    return None if seconds is None else format_time(datetime.fromtimestamp(seconds, UTC))


def fleet_document(controller: FleetController, bypass: Bypass | None = None) -> dict[str, Any]:
    """The fleet as the instance last read it (no engine call), times formatted; with
    ``bypass``, the fleet's bypass this instance honours (``GET /server/fleet``)."""
    view = controller.fleet.view()
    if bypass is not None:
        view["bypass"] = bypass_document(bypass)
    for key in ("deadline", "engine_lost_since"):
        if key in view:
            view[key] = _wall(view[key])
    for instance in view["instances"]:
        instance["since"] = _wall(instance["since"])
        instance["seen"] = _wall(instance["seen"])
    return view


def bypass_document(bypass: Bypass) -> dict[str, Any]:
    """Who the fleet's bypass lets through, and who published it: never a digest.

    ``published_by`` is None while this instance has not reached the fleet's bypass yet
    (then it shows its own, which it honours meanwhile).
    """
    fleet = bypass.fleet
    if fleet is None:
        return {
            "secret": bypass.has_secret,
            "allow": [str(network) for network in bypass.allow],
            "published_by": None,
            "published_at": None,
        }
    return {
        "secret": fleet.has_secret,
        "allow": list(fleet.allow),
        "published_by": fleet.published_by,
        "published_at": _wall(fleet.published_at),
    }


def status_json(controller: ModeController, stats: RequestStats, now: float | None = None) -> bytes:
    """:func:`status_document` as the status route sends it: compact JSON, UTF-8.

    Exactly ``JSONResponse(status_document(...)).body``, built from pieces: what changes only
    with the controller's state (mode, times, reason, window, drain) or once a second (the
    memory figures) is encoded once and reused; only the clock, the counters, the in-flight
    and bypass counts are encoded per request. The status route is polled, under load too
    (``bench/status_throughput.py``).
    """
    if isinstance(controller, FleetController):
        # The fleet's part changes with every instance's heartbeat: encoded whole, as before.
        return _encode(status_document(controller, stats, now)).encode("utf-8")
    status = controller.status()
    steady = _steady_pieces(
        status.mode,
        status.state,
        status.since,
        status.drain_timeout,
        status.timeout_policy,
        status.target,
        status.drain_started,
        status.deadline,
        status.reason,
        status.lame_duck,
        status.lame_duck_until,
        status.window,
        stats.started,
        controller.policy,
    )
    return b"".join(
        (
            steady[0],
            _json_time(format_timestamp(time.time() if now is None else now)),
            steady[1],
            _json_time(format_timestamp(stats.last_request_timestamp)),
            _memory_piece(_memory()),
            b',"request_today":%d,"client_errors_today":%d,"server_errors_today":%d'
            % (stats.requests, stats.client_errors, stats.server_errors),
            steady[2],
            _encode(status.in_flight).encode("utf-8"),
            steady[3],
            _encode(controller.gate.bypassed()).encode("utf-8"),
            steady[4],
        )
    )


#: JSONResponse's encoding (compact, UTF-8 as is, no NaN), made once.
_encode = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
).encode


def _json_time(formatted: str | None) -> bytes:
    # Formatted times are ASCII digits and punctuation: no escaping needed.
    return b"null" if formatted is None else b'"%s"' % formatted.encode("ascii")


@functools.lru_cache(maxsize=8)
def _steady_pieces(
    mode: Mode,
    state: State,
    since: datetime,
    drain_timeout: float,
    timeout_policy: TimeoutPolicy,
    target: Mode | None,
    drain_started: datetime | None,
    deadline: datetime | None,
    reason: str | None,
    lame_duck: float,
    lame_duck_until: datetime | None,
    window: Window | None,
    started: datetime,
    policy: AdmissionPolicy,
) -> tuple[bytes, bytes, bytes, bytes, bytes]:
    """The document around its per-request values, for one state of the controller."""
    middle: dict[str, Any] = {
        "drain_timeout": drain_timeout,
        "timeout_policy": timeout_policy.value,
        "reason": reason,
    }
    tail: dict[str, Any] = {"lame_duck": lame_duck}
    if lame_duck_until is not None:
        tail["lame_duck_until"] = format_time(lame_duck_until)
    if window is not None:
        tail["window"] = window_document(window)
    if target is not None:
        tail["target"] = target.value
        tail["drain_started"] = format_time(drain_started)
        tail["deadline"] = format_time(deadline)
        tail["waiting_for"] = list(policy.outgoing(state))
    return (
        f'{{"version":{_encode(VERSION)},"system_time":'.encode(),
        f',"mode":{_encode(mode.value)},"started":{_encode(format_time(started))}'
        f',"last_request":'.encode(),
        f',"state":{_encode(state.value)},"since":{_encode(format_time(since))}'
        f',"in_flight":'.encode(),
        ("," + _encode(middle)[1:-1] + ',"bypassed":').encode(),
        ("," + _encode(tail)[1:]).encode(),
    )


_memory_cache: tuple[dict[str, int], bytes] | None = None


def _memory_piece(figures: dict[str, int]) -> bytes:
    # MemoryFigures hands out the same dict until it reads the figures again (once a second).
    global _memory_cache
    cached = _memory_cache
    if cached is None or cached[0] is not figures:
        cached = _memory_cache = (figures, ("," + _encode(figures)[1:-1]).encode())
    return cached[1]
