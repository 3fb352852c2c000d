"""The optional fields of a mode request beyond ``mode`` and ``reason``.

``{"mode": "maintenance", "dry_run": true}`` asks what a switch would do now, without doing it.
``"until"`` (an RFC 3339 time, or a duration such as ``"30m"`` from the window's start) ends a
maintenance window by itself; ``"start_at"`` (a time, or a duration from now) begins it later
(:mod:`servermode.core.window`). Each field is checked here, and a bad one is a 400 with the
error body.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from servermode.core.records import utc_now
from servermode.core.window import parse_moment

from .problems import Problem, ProblemError

__all__ = ["ModeRequest", "read_options"]


@dataclass(frozen=True, slots=True)
class ModeRequest:
    """A mode request, read and checked."""

    mode: str
    reason: str | None = None
    instance: str | None = None  # fleet mode: one instance out of the fleet, or back in
    dry_run: bool = False
    start_at: datetime | None = None
    until: datetime | None = None


def read_options(data: dict[str, Any]) -> dict[str, Any]:
    """The optional fields of ``data`` as :class:`ModeRequest` keyword arguments."""
    options: dict[str, Any] = {}
    dry_run = data.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise ProblemError(
            Problem.BAD_PARAMETER,
            f"bad dry_run {_shown(dry_run)}: true or false",
        )
    options["dry_run"] = dry_run
    now = utc_now()
    start_at = data.get("start_at")
    if start_at is not None:
        options["start_at"] = parse_moment("start_at", start_at, now)
    until = data.get("until")
    if until is not None:
        options["until"] = parse_moment("until", until, options.get("start_at", now))
    return options


def _shown(value: Any) -> str:
    text = json.dumps(value, default=repr)
    return text if len(text) <= 80 else text[:80] + "..."
