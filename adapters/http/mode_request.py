"""The optional fields of a mode request beyond ``mode`` and ``reason``.

``{"mode": "maintenance", "dry_run": true}`` asks what a switch would do now, without doing it.
Each field is checked here, and a bad one is a 400 with the error body.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .problems import Problem, ProblemError

__all__ = ["ModeRequest", "read_options"]


@dataclass(frozen=True, slots=True)
class ModeRequest:
    """A mode request, read and checked."""

    mode: str
    reason: str | None = None
    dry_run: bool = False


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
    return options


def _shown(value: Any) -> str:
    text = json.dumps(value, default=repr)
    return text if len(text) <= 80 else text[:80] + "..."
