"""Log levels: every uvicorn level works, anything else is a clear settings error."""

from __future__ import annotations

import io
import logging

import pytest
from servermode.adapters.cli.logging import LOG_LEVELS, configure_logging
from servermode.adapters.cli.options import resolve_serve
from servermode.adapters.cli.settings import SettingsError


@pytest.mark.parametrize("level", LOG_LEVELS)
def test_every_documented_level_configures(level: str) -> None:
    """Each level, trace included (uvicorn's, below debug), sets the root logger's level."""
    root = logging.getLogger()
    saved = root.level, root.handlers
    try:
        configure_logging(level, "json", io.StringIO())
        assert logging.getLevelName(root.level) == level.upper()
    finally:
        root.setLevel(saved[0])
        root.handlers = saved[1]


def test_an_unknown_level_is_a_settings_error() -> None:
    """An unknown level is refused with the list of levels, not a traceback at start."""
    with pytest.raises(SettingsError, match="'verbose' is not one of 'trace', 'debug'"):
        resolve_serve([], {"SERVERMODE_LOG_LEVEL": "verbose"})
