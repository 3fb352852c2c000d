"""Logging: JSON lines when not on a terminal, a console renderer on one."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import logging.config
from collections.abc import Iterator

import pytest
import structlog
import uvicorn
from click.testing import CliRunner
from servermode.adapters.cli.commands import main
from servermode.adapters.cli.logging import configure_logging
from servermode.adapters.http import events


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    names = ("servermode.audit", "uvicorn", "uvicorn.error", "uvicorn.access")
    loggers = [logging.getLogger(name) for name in names]
    saved = [(logger.level, logger.handlers[:], logger.propagate) for logger in loggers]
    yield
    root.handlers, root.level = handlers, level
    for logger, (own_level, own_handlers, propagate) in zip(loggers, saved, strict=True):
        logger.level, logger.handlers, logger.propagate = own_level, own_handlers, propagate
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


class CountingStream(io.StringIO):
    """Counts the writes that reach the stream (each one a system call on a real one)."""

    writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


def test_access_lines_of_one_loop_iteration_are_written_at_once() -> None:
    """Lines written within one event-loop iteration reach the stream in one write."""
    out = CountingStream()
    logs = configure_logging("info", "json", out)

    async def burst() -> None:
        for n in range(50):
            logs.lines.write(f'{{"n": {n}}}')
        assert out.getvalue() == ""  # not yet: at the end of this iteration
        await asyncio.sleep(0)

    asyncio.run(burst())
    assert [json.loads(line)["n"] for line in out.getvalue().splitlines()] == list(range(50))
    assert out.writes == 1


def test_other_log_lines_flush_the_access_lines_first() -> None:
    """Any other line (audit, uvicorn) flushes the pending access lines before it: the
    order in the log is the order things happened. Without a loop, a line is written at once."""
    out = io.StringIO()
    logs = configure_logging("info", "json", out)

    async def interleaved() -> None:
        logs.lines.write('{"event": "first"}')
        structlog.get_logger("servermode.audit").info("second")
        logs.lines.write('{"event": "third"}')
        await asyncio.sleep(0)

    asyncio.run(interleaved())
    logs.lines.write('{"event": "fourth"}')
    events = [json.loads(line)["event"] for line in out.getvalue().splitlines()]
    assert events == ["first", "second", "third", "fourth"]


def test_the_audit_is_written_whatever_the_level() -> None:
    """At level error, the audit's info and warning lines are still written, nothing else."""
    out = io.StringIO()
    configure_logging("error", "json", out)
    structlog.get_logger("servermode.audit").info("mode_transition", outcome="completed")
    structlog.get_logger("servermode.audit").warning("mode_transition", outcome="forced")
    structlog.get_logger("servermode").warning("not_this")
    logging.getLogger("uvicorn.error").info("nor this")
    outcomes = [json.loads(line)["outcome"] for line in out.getvalue().splitlines()]
    assert outcomes == ["completed", "forced"]


@pytest.mark.parametrize("level", ["info", "warning"])
def test_serve_leaves_uvicorns_access_logger_without_handlers(
    level: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cost found in uvicorn: it builds every access line's arguments (client address,
    quoted path) when its access logger has a handler anywhere up the tree, whatever the
    level. `serve` turns uvicorn's access log off, so that logger has none: the check that
    uvicorn makes once per connection (``hasHandlers``) is False."""
    configs: list[uvicorn.Config] = []

    def run(app: object, on_stop: object, **options: object) -> None:
        configs.append(uvicorn.Config(app, **options))  # type: ignore[arg-type]

    monkeypatch.setattr(events, "run_server", run)
    result = CliRunner().invoke(
        main, ["serve", "--state", ":memory:", "--log-level", level, "--access-log"]
    )
    assert result.exit_code == 0, result.output
    assert configs and configs[0].access_log is False
    assert not logging.getLogger("uvicorn.access").hasHandlers()


def test_uvicorns_access_logger_has_no_handler_up_the_tree() -> None:
    """Whoever configures logging last (a worker of `serve --workers N` configures after
    uvicorn), uvicorn's access logger reaches no handler: servermode writes its own lines."""
    logging.config.dictConfig(uvicorn.config.LOGGING_CONFIG)  # as uvicorn sets up by default
    assert logging.getLogger("uvicorn.access").hasHandlers()
    configure_logging("debug", "json", io.StringIO())
    assert not logging.getLogger("uvicorn.access").hasHandlers()
    assert logging.getLogger("uvicorn.error").hasHandlers()
