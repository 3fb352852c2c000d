"""The library prints nothing unasked; a configured logging shows its events (issue 10)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SWITCHES = textwrap.dedent(
    """
    import asyncio
    from servermode.core import ModeController

    async def main():
        controller = ModeController(drain_timeout=0.05)   # initialized: an info event
        await controller.start()
        ticket = controller.admit("profile")
        await controller.set_mode("maintenance")           # forced: a warning event
        ticket.release()
        await controller.close()

    asyncio.run(main())
    """
)


def run(prelude: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", prelude + SWITCHES],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )


def test_nothing_is_printed_unasked() -> None:
    """Switches, a forced one included (a warning), print nothing to stdout or stderr."""
    result = run()
    assert (result.stdout, result.stderr) == ("", "")


def test_the_standard_library_configuration_shows_the_audit() -> None:
    """Once the application configures logging, the audit events reach its handlers."""
    result = run("import logging; logging.basicConfig(level=logging.INFO)\n")
    assert result.stdout == ""
    audit = [line for line in result.stderr.splitlines() if "servermode.audit" in line]
    assert len(audit) == 2, result.stderr
    assert "outcome=initialized" in audit[0] and "outcome=forced" in audit[1]
