"""`servermode serve` as a real process: what it logs, whom it believes, what it refuses to start.

Each test starts the CLI as an operator would, on loopback, with its state in ``tmp_path``.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2
import pytest
from servermode.adapters.store.sqlite import SQLiteStore
from servermode.core import Mode, Outcome, PersistedState, State, TransitionRecord

from .servers import REPO, free_port, wait_until_live

pytestmark = pytest.mark.timeout(60)

# An app that raises on GET /profiles/raise (a profile request, admitted in production).
FAULTY_APP = "tests.reliability.faulty_app:app"
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@dataclass
class Served:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def lines(self) -> list[str]:
        return ANSI.sub("", self.log.read_text(errors="replace")).splitlines()


def serve_argv(port: int, *args: str) -> list[str]:
    return [sys.executable, "-m", "servermode.adapters.cli", "serve", "--port", str(port), *args]


@contextmanager
def serving(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[Served]:
    """``servermode serve ARGS`` on a free port, its output in a file; stopped afterwards."""
    port = free_port()
    log = tmp_path / f"serve-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            serve_argv(port, *args),
            cwd=REPO,
            env={**os.environ, **(env or {})},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    served = Served(f"http://127.0.0.1:{port}", process, log)
    try:
        wait_until_live(served.url, process, "/server/status", output=log.read_text)
        yield served
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)


def run_serve(
    *args: str, env: dict[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """``servermode serve ARGS`` expected to exit by itself (refused at start)."""
    return subprocess.run(
        serve_argv(free_port(), *args),
        cwd=REPO,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def assert_one_error_line(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """Exited non-zero with exactly one ``Error:`` line (holding ``fragments``), no traceback."""
    assert result.returncode != 0, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0]
    return errors[0]


def raw_request(url: str, request: bytes) -> bytes:
    """Send ``request`` as it is (headers in the order written) and read the whole answer."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


# -- item 9: no token in any log line ---------------------------------------------------------


@pytest.mark.parametrize("log_format", ["json", "console"])
def test_a_token_sent_to_a_failing_app_is_in_no_log_line(tmp_path: Path, log_format: str) -> None:
    """The app raises while the admin token was the last header read: the traceback is
    logged, and no line holds the token (tracebacks carry no local variables)."""
    token = secrets.token_urlsafe(24)
    args = ("--app", FAULTY_APP, "--state", str(tmp_path / "s.db"), "--log-format", log_format)
    with serving(tmp_path, *args, env={"SERVERMODE_ADMIN_TOKEN": token}) as served:
        answer = raw_request(
            served.url,
            b"GET /profiles/raise HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
            b"Authorization: Bearer " + token.encode() + b"\r\n\r\n",
        )
        assert answer.startswith(b"HTTP/1.1 500")
        # A switch with the token: the audit line is written too.
        switched = httpx2.post(
            f"{served.url}/server/mode",
            json={"mode": "maintenance"},
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        assert switched.status_code == 200
        deadline = time.monotonic() + 5
        while not any("RuntimeError" in line for line in served.lines()):
            assert time.monotonic() < deadline, "the traceback was not logged"
            time.sleep(0.05)
    lines = served.lines()
    text = "\n".join(lines)
    assert "the application failed" in text  # the exception itself is logged
    assert "mode_transition" in text
    if log_format == "json":
        assert all(json.loads(line) for line in lines)
    leaks = [line for line in lines if token in line or token[:16] in line]
    assert leaks == []


# -- item 10: the client in the audit is the peer, unless its proxy is trusted ----------------


def switch_from_loopback(url: str, forwarded_for: str) -> None:
    answer = httpx2.post(
        f"{url}/server/mode",
        json={"mode": "maintenance"},
        headers={"X-Forwarded-For": forwarded_for},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text


def audited_clients(state: Path) -> list[str | None]:
    """The client of every switch to maintenance in the audit trail (after the service)."""
    store = SQLiteStore(state)
    try:
        history = store.history(limit=100)
    finally:
        store.close()
    return [r.client for r in history if r.to_state is State.MAINTENANCE]


@pytest.mark.parametrize(
    ("how", "trusted"),
    [
        ("default", False),
        ("flag", True),
        ("environment", True),
    ],
)
def test_a_forwarded_client_is_believed_only_from_a_listed_proxy(
    tmp_path: Path, how: str, trusted: bool
) -> None:
    """X-Forwarded-For from loopback is ignored by default: the audit records the peer. With
    --forwarded-allow-ips 127.0.0.1 (or its variable) the header names the client."""
    state = tmp_path / "s.db"
    args: tuple[str, ...] = ("--state", str(state), "--log-format", "json")
    env: dict[str, str] = {}
    if how == "flag":
        args += ("--forwarded-allow-ips", "127.0.0.1")
    elif how == "environment":
        env["SERVERMODE_FORWARDED_ALLOW_IPS"] = "127.0.0.1, ::1"
    with serving(tmp_path, *args, env=env) as served:
        switch_from_loopback(served.url, "203.0.113.66")
    [client] = audited_clients(state)
    assert client is not None
    if trusted:
        assert client.startswith("203.0.113.66:")
    else:
        assert client.startswith("127.0.0.1:")
    events = [json.loads(line) for line in served.lines() if "mode_transition" in line]
    [audit] = [event for event in events if event["to_state"] == "maintenance"]
    assert audit["client"] == client


def test_a_malformed_proxy_list_is_refused() -> None:
    """An entry uvicorn would silently take for a host name is an error at start."""
    result = run_serve("--state", ":memory:", "--forwarded-allow-ips", "127.0.0.1,10.0.0.1/8")
    assert_one_error_line(result, "--forwarded-allow-ips", "'10.0.0.1/8'")
    result = run_serve("--state", ":memory:", env={"SERVERMODE_FORWARDED_ALLOW_IPS": "proxy"})
    assert_one_error_line(result, "SERVERMODE_FORWARDED_ALLOW_IPS", "'proxy'")


# -- item 11: numbers that parse but cannot be served -----------------------------------------


@pytest.mark.parametrize(
    ("flag", "value", "says"),
    [
        ("--drain-timeout", "inf", "drain timeout must be between 0 and 604800 seconds"),
        ("--drain-timeout", "nan", "drain timeout must be between 0 and 604800 seconds"),
        ("--drain-timeout", "1e12", "drain timeout must be between 0 and 604800 seconds"),
        ("--drain-timeout", "-1", "drain timeout must be between 0 and 604800 seconds"),
        ("--port", "70000", "port must be between 0 and 65535"),
        ("--retry-after", "99999999", "retry-after must be between 1 and 604800 seconds"),
        ("--body-timeout", "inf", "body timeout must be more than 0"),
        ("--body-timeout", "0", "body timeout must be more than 0"),
        ("--demo-delay", "61", "demo delay must be between 0 and 60 seconds"),
        ("--demo-delay", "nan", "demo delay must be between 0 and 60 seconds"),
    ],
)
def test_an_unservable_number_is_refused_at_start(flag: str, value: str, says: str) -> None:
    """From a flag or from its variable: one Error line naming it, never a traceback."""
    result = run_serve("--state", ":memory:", flag, value)
    assert_one_error_line(result, flag, says)
    variable = "SERVERMODE_" + flag.removeprefix("--").replace("-", "_").upper()
    if flag == "--port":  # run_serve gives --port, and a flag wins over its variable
        result = subprocess.run(
            [sys.executable, "-m", "servermode.adapters.cli", "serve", "--state", ":memory:"],
            cwd=REPO,
            env={**os.environ, variable: value},
            capture_output=True,
            text=True,
            timeout=30,
        )
    else:
        result = run_serve("--state", ":memory:", env={variable: value})
    assert_one_error_line(result, variable, says)


# -- item 13: one process per state file ------------------------------------------------------


def test_a_second_process_on_the_state_file_is_refused_during_a_drain(tmp_path: Path) -> None:
    """While the first service drains, a second one on its file is refused at start, saying
    which process holds it; the first one's switch then completes, and nothing was recovered."""
    state = tmp_path / "s.db"
    args = ("--state", str(state), "--log-format", "json", "--drain-timeout", "20")
    with serving(tmp_path, *args) as first:
        slow = threading.Thread(
            target=httpx2.get, args=(f"{first.url}/profiles/1?delay=2",), kwargs={"timeout": 10}
        )
        slow.start()
        outcome: dict[str, Any] = {}

        def switch() -> None:
            outcome["answer"] = httpx2.post(
                f"{first.url}/server/mode", json={"mode": "maintenance"}, timeout=20
            )

        switcher = threading.Thread(target=switch)
        time.sleep(0.3)  # the slow request is in flight
        switcher.start()
        deadline = time.monotonic() + 5
        while httpx2.get(f"{first.url}/server/status").json()["state"] != (
            "draining_to_maintenance"
        ):
            assert time.monotonic() < deadline
            time.sleep(0.02)

        second = run_serve("--state", str(state))
        assert_one_error_line(
            second,
            f"{state} is locked",
            f"another servermode process (pid {first.process.pid}) is using it",
        )
        switcher.join(15)
        slow.join(15)
        answer = outcome["answer"]
        assert answer.status_code == 200
        assert answer.headers["Servermode-Outcome"] == "completed"
        assert httpx2.get(f"{first.url}/server/status").json()["state"] == "maintenance"
    outcomes = [
        json.loads(line).get("outcome") for line in first.lines() if "mode_transition" in line
    ]
    assert "recovered" not in outcomes


def test_a_state_file_is_free_again_once_its_service_stopped(tmp_path: Path) -> None:
    """The lock lives as long as the process: the next service on the file starts."""
    state = tmp_path / "s.db"
    with serving(tmp_path, "--state", str(state), "--log-format", "json") as first:
        switch_from_loopback(first.url, "127.0.0.1")
    with serving(tmp_path, "--state", str(state), "--log-format", "json") as second:
        assert httpx2.get(f"{second.url}/server/status").json()["mode"] == "maintenance"


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_more_than_one_worker_is_refused(how: str) -> None:
    """--workers 2 (or SERVERMODE_WORKERS=2) is refused, pointing at fleet mode."""
    if how == "flag":
        result = run_serve("--state", ":memory:", "--workers", "2")
    else:
        result = run_serve("--state", ":memory:", env={"SERVERMODE_WORKERS": "2"})
    assert_one_error_line(result, "workers must be 1, not 2", "fleet mode")


def test_one_worker_is_accepted_and_uvicorns_own_variable_is_ignored(tmp_path: Path) -> None:
    """--workers 1 serves; WEB_CONCURRENCY (uvicorn's) does not turn into several workers."""
    args = ("--state", ":memory:", "--workers", "1", "--log-format", "json")
    with serving(tmp_path, *args, env={"WEB_CONCURRENCY": "3"}) as served:
        assert httpx2.get(f"{served.url}/profiles/1?delay=0").status_code == 200


# -- item 15: state paths that cannot be served -----------------------------------------------


def servermode_file(path: Path, records: int = 40) -> None:
    store = SQLiteStore(path)
    now = datetime.now(UTC)
    store.save(PersistedState(State.PRODUCTION, now))
    for n in range(records):
        store.append(
            TransitionRecord(
                State.PRODUCTION,
                State.PRODUCTION,
                None,
                Mode.PRODUCTION,
                Outcome.NOOP,
                now,
                reason=f"{n} " + "x" * 1000,
            )
        )
    store.close()


def bad_state(kind: str, tmp_path: Path) -> Path:
    """A --state path of the given kind that no service can run on."""
    path = tmp_path / "state.db"
    if kind == "garbage bytes":
        path.write_bytes(os.urandom(8192))
    elif kind == "truncated database":
        servermode_file(path)
        os.truncate(path, path.stat().st_size // 2)
    elif kind == "another application's database":
        other = sqlite3.connect(path)
        other.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
        other.execute("INSERT INTO invoices (total) VALUES (12.5)")
        other.commit()
        other.close()
    elif kind == "a directory":
        path.mkdir()
    elif kind == "a path below a regular file":
        (tmp_path / "plain").write_text("a file")
        path = tmp_path / "plain" / "state.db"
    elif kind == "a device":
        path = Path(os.devnull)
    elif kind == "a pipe":
        os.mkfifo(path)
    else:
        raise AssertionError(kind)
    return path


@pytest.mark.parametrize(
    ("kind", "says"),
    [
        ("garbage bytes", "is not a servermode database, or it is corrupt"),
        ("truncated database", "is corrupt"),
        ("another application's database", "another application"),
        ("a directory", "is a folder"),
        ("a path below a regular file", "exists and is not a folder"),
        ("a device", "is not a regular file"),
        ("a pipe", "is not a regular file"),
    ],
)
def test_a_state_path_that_cannot_be_served_is_one_error_line(
    tmp_path: Path, kind: str, says: str
) -> None:
    """Each kind of bad --state ends in one Error line naming it; a file is left as it was."""
    path = bad_state(kind, tmp_path)
    before = path.read_bytes() if path.is_file() else None
    beside = sorted(tmp_path.iterdir())
    result = run_serve("--state", str(path), "--log-format", "json")
    assert_one_error_line(result, str(path), says)
    if before is not None:
        assert path.read_bytes() == before
    assert sorted(tmp_path.iterdir()) == beside  # no -wal, -shm or lock file left beside it
