"""Fixtures for the adapters' tests: a database path on disk and records to store."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from servermode.core import Mode, Outcome, State, TransitionRecord

RecordFactory = Callable[..., TransitionRecord]


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """Where the service keeps its database by default: a var/ folder not created yet."""
    return tmp_path / "var" / "servermode.db"


@pytest.fixture
def make_record() -> RecordFactory:
    """Build a transition record; keyword arguments override the fields of a completed switch."""

    def make(**fields: Any) -> TransitionRecord:
        values: dict[str, Any] = {
            "from_state": State.PRODUCTION,
            "to_state": State.MAINTENANCE,
            "trigger": "drained",
            "target_mode": Mode.MAINTENANCE,
            "outcome": Outcome.COMPLETED,
            "at": datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC),
        }
        values.update(fields)
        return TransitionRecord(**values)

    return make
