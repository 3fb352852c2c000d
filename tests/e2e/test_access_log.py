"""The access log is its own switch (issue 14 item 1), and the audit is written at any level.

``servermode serve`` in a process, its log (JSON lines) read back after it stops.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx2
import pytest

from .servers import REPO, free_port, wait_until_live


@contextmanager
def served(*args: str, env: dict[str, str] | None = None) -> Iterator[tuple[str, list[Any]]]:
    """``servermode serve ARGS`` on a free port; yields its URL and, once it has stopped, the
    JSON lines it logged (the list is filled on exit)."""
    port = free_port()
    command = [sys.executable, "-m", "servermode.adapters.cli", "serve", "--port", str(port)]
    command += ["--demo-delay", "0", "--log-format", "json", *args]
    logged: list[Any] = []
    with tempfile.TemporaryFile("w+") as output, tempfile.TemporaryDirectory() as state:
        process = subprocess.Popen(
            command,
            cwd=REPO,
            env={**os.environ, "SERVERMODE_STATE": os.path.join(state, "s.db"), **(env or {})},
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
        )

        def printed() -> str:
            output.seek(0)
            return output.read()

        try:
            url = f"http://127.0.0.1:{port}"
            wait_until_live(url, process, output=printed)
            yield url, logged
        finally:
            process.send_signal(signal.SIGINT)
            process.wait(10)
            logged.extend(json.loads(line) for line in printed().splitlines() if line)


def exercise(url: str) -> None:
    """A 200, a 404, a switch to maintenance, then a refusal (503) and a status read."""
    with httpx2.Client(base_url=url, timeout=10) as client:
        assert client.get("/profiles/1?full=1").status_code == 200
        assert client.get("/nowhere").status_code == 404
        assert client.post("/server/mode", json={"mode": "maintenance"}).status_code == 200
        assert client.get("/profiles/1").status_code == 503
        assert client.get("/server/status").status_code == 200


def test_access_lines_by_default_one_per_answer_refusals_included() -> None:
    """One servermode.access line per answer, in order, the gate's 503 among them; none of
    uvicorn's own access lines."""
    with served() as (url, logged):
        exercise(url)
    access = [
        line
        for line in logged
        if line.get("logger") == "servermode.access" and "/health/" not in line["request"]
    ]
    assert [(line["request"], line["status"]) for line in access] == [
        ("GET /profiles/1?full=1 HTTP/1.1", 200),
        ("GET /nowhere HTTP/1.1", 404),
        ("POST /server/mode HTTP/1.1", 200),
        ("GET /profiles/1 HTTP/1.1", 503),
        ("GET /server/status HTTP/1.1", 200),
    ]
    assert all(line["client"].startswith("127.0.0.1:") for line in access)
    assert all(line["level"] == "info" and line["timestamp"].endswith("Z") for line in access)
    assert not [line for line in logged if line.get("logger") == "uvicorn.access"]
    # Lines keep their order: the switch's audit line, then the access line of its request.
    switch = next(n for n, line in enumerate(logged) if line.get("outcome") == "completed")
    post = next(n for n, line in enumerate(logged) if "POST" in line.get("request", ""))
    assert switch < post


@pytest.mark.parametrize(
    ("args", "env"),
    [(("--no-access-log",), None), ((), {"SERVERMODE_ACCESS_LOG": "false"})],
    ids=["flag", "environment"],
)
def test_no_access_log_keeps_the_audit_at_any_level(
    args: tuple[str, ...], env: dict[str, str] | None
) -> None:
    """Off (flag or environment), no access line at all; at --log-level error the audit of
    the switch is still written, and nothing else at info."""
    with served(*args, "--log-level", "error", env=env) as (url, logged):
        exercise(url)
    assert not [line for line in logged if "access" in str(line.get("logger"))]
    audit = [line for line in logged if line.get("logger") == "servermode.audit"]
    assert [line["outcome"] for line in audit][-1] == "completed"
    assert {line["level"] for line in logged} <= {"info", "warning", "error", "critical"}
    assert all(line["logger"] == "servermode.audit" for line in logged if line["level"] == "info")
