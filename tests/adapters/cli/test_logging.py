"""Logging: JSON lines when not on a terminal, a console renderer on one."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog
from servermode.adapters.cli.logging import configure_logging


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers, root.level = handlers, level
    structlog.reset_defaults()


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_json_when_not_a_terminal() -> None:
    """Off a terminal, structlog and stdlib (uvicorn) lines are JSON objects."""
    out = io.StringIO()
    configure_logging("info", "auto", out)
    structlog.get_logger("servermode.audit").info("mode_transition", outcome="completed")
    logging.getLogger("uvicorn.error").info("Started server process")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert lines[0]["event"] == "mode_transition"
    assert lines[0]["outcome"] == "completed"
    assert lines[0]["logger"] == "servermode.audit"
    assert lines[1]["event"] == "Started server process"
    assert lines[1]["logger"] == "uvicorn.error"


def test_console_on_a_terminal() -> None:
    """On a terminal the lines are for people, not JSON."""
    out = Terminal()
    configure_logging("info", "auto", out)
    structlog.get_logger("servermode").info("servermode_serving", port=8080)
    text = out.getvalue()
    assert "servermode_serving" in text and "port" in text
    with pytest.raises(ValueError):
        json.loads(text.splitlines()[0])


def test_level_filters() -> None:
    """Below the configured level nothing is written."""
    out = io.StringIO()
    configure_logging("warning", "json", out)
    structlog.get_logger("servermode").info("quiet")
    structlog.get_logger("servermode").warning("loud")
    assert [json.loads(line)["event"] for line in out.getvalue().splitlines()] == ["loud"]


SECRET = "s3cret-token-in-a-local-variable"


def fail_holding_a_secret() -> None:
    authorization = f"Bearer {SECRET}"  # a local variable, as a request's frame holds one
    raise RuntimeError(f"failed after reading {len(authorization)} characters")


@pytest.mark.parametrize("fmt", ["json", "console"])
@pytest.mark.parametrize("source", ["structlog", "stdlib"])
def test_tracebacks_carry_no_local_variables(fmt: str, source: str) -> None:
    """A logged exception shows its frames and message, never the frames' local variables."""
    out = io.StringIO() if fmt == "json" else Terminal()
    configure_logging("info", fmt, out)
    try:
        fail_holding_a_secret()
    except RuntimeError:
        if source == "structlog":
            structlog.get_logger("servermode").exception("request_failed")
        else:  # as uvicorn logs "Exception in ASGI application"
            logging.getLogger("uvicorn.error").exception("Exception in ASGI application")
    text = out.getvalue()
    assert "fail_holding_a_secret" in text and "failed after reading" in text
    assert SECRET not in text
    if fmt == "json":
        [line] = text.splitlines()
        frames = json.loads(line)["exception"][0]["frames"]
        assert frames and all("locals" not in frame for frame in frames)
