"""The operator always knows what is happening: `set --wait` progress, a forced switch's
stragglers, Ctrl-C during a switch, the version (issue 10)."""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path

import httpx2
import pytest

from .servers import REPO, cli, free_port, running_process, wait_until_live

pytestmark = pytest.mark.timeout(60)

CLI = [sys.executable, "-m", "servermode.adapters.cli"]


@contextmanager
def service(drain_timeout: float) -> Iterator[str]:
    """`servermode serve` (the demo) in its own process, with this drain timeout."""
    port = free_port()
    argv = [*CLI, "serve", "--port", str(port), "--drain-timeout", str(drain_timeout)]
    with running_process(argv, port) as url:
        yield url


def slow(url: str, path: str, seconds: float) -> threading.Thread:
    """A demo request that takes ``seconds``, started in a thread."""
    thread = threading.Thread(
        target=httpx2.get, args=(f"{url}{path}?delay={seconds}",), kwargs={"timeout": 30}
    )
    thread.start()
    return thread


def in_flight(url: str) -> int:
    return sum(httpx2.get(f"{url}/server/status").json()["in_flight"].values())


def wait_for(condition: object, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def operator_env(url: str) -> dict[str, str]:
    return {**os.environ, "SERVERMODE_URL": url, "SERVERMODE_ADMIN_TOKEN": "", "COLUMNS": "200"}


def test_version() -> None:
    """`servermode --version` prints the installed package's version."""
    result = cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"servermode, version {version('servermode')}"


def test_off_a_terminal_a_line_only_when_something_changes() -> None:
    """Piped, `set --wait` prints one line per change of the requests in flight, not per poll."""
    with service(drain_timeout=10) as url:
        requests = [slow(url, "/profiles/1", 0.8), slow(url, "/services/1", 1.6)]
        wait_for(lambda: in_flight(url) == 2)
        result = subprocess.run(
            [*CLI, "set", "maintenance", "--wait", "--interval", "0.1"],
            env=operator_env(url),
            capture_output=True,
            text=True,
            timeout=30,
        )
        for request in requests:
            request.join()
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[-1] == "server changed: maintenance (completed)"
    progress = [line.rsplit(",", 1)[0] for line in lines[:-1]]
    # Polled every 0.1 s for ~1.6 s, but only two different situations to tell (and maybe a
    # third: all released, the new state being saved).
    assert progress[:2] == [
        "draining to maintenance: 2 in flight (profile 1, service 1)",
        "draining to maintenance: 1 in flight (service 1)",
    ], result.stdout
    assert progress[2:] in ([], ["draining to maintenance: 0 in flight (none)"]), result.stdout
    assert all(line.endswith("s left") for line in lines[:-1])
    assert "\r" not in result.stdout


def test_on_a_terminal_one_live_line() -> None:
    """On a terminal the progress is one line rewritten in place, erased before the result."""
    with service(drain_timeout=10) as url:
        request = slow(url, "/profiles/1", 2.0)
        wait_for(lambda: in_flight(url) == 1)
        leader, follower = pty.openpty()
        with subprocess.Popen(
            [*CLI, "set", "maintenance", "--wait", "--interval", "0.1"],
            env=operator_env(url),
            stdout=follower,
            stderr=subprocess.DEVNULL,
        ) as process:
            os.close(follower)
            output = b""
            while True:
                try:
                    chunk = os.read(leader, 4096)
                except OSError:  # EIO: the terminal's other end is closed
                    break
                if not chunk:
                    break
                output += chunk
            os.close(leader)
            assert process.wait(10) == 0
        request.join()
    text = output.decode()
    *updates, result = text.split("\r\x1b[K")
    assert result.strip() == "server changed: maintenance (completed)", text
    assert len(updates) >= 3, text  # rewritten at every poll
    assert updates[0] == ""  # the first update also starts by erasing the line
    running = "draining to maintenance: 1 in flight (profile 1), "
    finished = "draining to maintenance: 0 in flight (none), "  # released, not yet switched
    assert all(u.startswith((running, finished)) for u in updates[1:]), updates
    assert updates[1].startswith(running), updates
    assert "\n" not in "".join(updates)  # one line, never scrolled


def test_forced_says_how_many_still_ran_and_history_shows_them() -> None:
    """A drain that times out under force names its stragglers, in `set` and in `history`."""
    with service(drain_timeout=0.5) as url:
        request = slow(url, "/profiles/1", 3)
        wait_for(lambda: in_flight(url) == 1)
        env = operator_env(url)
        switch = subprocess.run(
            [*CLI, "set", "maintenance"], env=env, capture_output=True, text=True, timeout=30
        )
        history = subprocess.run(
            [*CLI, "history", "--limit", "1"], env=env, capture_output=True, text=True, timeout=30
        )
        request.join()
    assert switch.stdout.strip() == (
        "server changed: maintenance (forced: 1 request still running: profile 1)"
    ), switch.stderr
    header, newest = history.stdout.splitlines()
    assert "STRAGGLERS" in header.split()
    assert newest.split()[3] == "forced"
    assert newest.split()[header.split().index("STRAGGLERS") + 1] == "profile=1"


def test_ctrl_c_says_the_switch_goes_on_and_how_to_cancel_it() -> None:
    """Ctrl-C during `set --wait` explains that the switch continues on the service."""
    with service(drain_timeout=10) as url:
        request = slow(url, "/profiles/1", 2.5)
        wait_for(lambda: in_flight(url) == 1)
        with subprocess.Popen(
            [*CLI, "set", "maintenance", "--wait", "--interval", "0.1"],
            env=operator_env(url),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
        ) as process:
            assert process.stdout is not None and process.stderr is not None
            first = process.stdout.readline()
            assert first.startswith("draining to maintenance: 1 in flight"), first
            process.send_signal(signal.SIGINT)
            code = process.wait(10)
            err = process.stderr.read()
        status = httpx2.get(f"{url}/server/status").json()
        request.join()
        after = httpx2.get(f"{url}/server/status").json()
    assert code == 130
    assert "Aborted" not in err and "Traceback" not in err
    assert "the switch continues on the service (draining to maintenance: 1 in flight" in err
    assert "`servermode cancel` abandons it" in err
    assert status["state"] == "draining_to_maintenance"  # the switch went on
    assert after["mode"] == "maintenance"


@contextmanager
def logged_service(tmp_path: Path, name: str, *args: str) -> Iterator[tuple[str, Path, Path]]:
    """`servermode serve ARGS` with its stdout and its stderr in two files."""
    port = free_port()
    out, err = tmp_path / f"{name}.out", tmp_path / f"{name}.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(
            [*CLI, "serve", "--port", str(port), "--log-format", "json", *args],
            cwd=REPO,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_live(url, process, output=err.read_text)
        yield url, out, err
    finally:
        os.killpg(process.pid, signal.SIGINT)
        process.wait(10)


def events(path: Path, name: str) -> list[dict[str, object]]:
    return [e for e in map(json.loads, path.read_text().splitlines()) if e["event"] == name]


def test_a_restart_says_which_mode_it_restored_on_stderr(tmp_path: Path) -> None:
    """At start the service logs the mode it restored, a warning when that is maintenance;
    every log line goes to stderr, none to stdout."""
    state = str(tmp_path / "state.db")
    with logged_service(tmp_path, "first", "--state", state) as (url, out, err):
        switch = httpx2.post(f"{url}/server/mode", json={"mode": "maintenance"}, timeout=10)
        assert switch.status_code == 200
    [first] = events(err, "mode_restored")
    assert (first["level"], first["mode"]) == ("info", "production")
    with logged_service(tmp_path, "second", "--state", state) as (url, out2, err2):
        pass
    [second] = events(err2, "mode_restored")
    assert (second["level"], second["mode"], second["kept_in"]) == ("warning", "maintenance", state)
    assert second["refused"] == ["profile", "service"]
    assert "production traffic is refused" in str(second["note"])
    assert out.read_text() == out2.read_text() == ""
    assert events(err, "mode_transition") and events(err2, "servermode_serving")


def test_cancel_abandons_the_switch_under_way() -> None:
    """`servermode cancel` abandons the drain: the switch's caller is told, the mode stays,
    the history says who cancelled and why; with nothing under way it exits 1 saying so."""
    with service(drain_timeout=10) as url:
        env = operator_env(url)
        nothing = subprocess.run(
            [*CLI, "cancel"], env=env, capture_output=True, text=True, timeout=30
        )
        request = slow(url, "/profiles/1", 2)
        wait_for(lambda: in_flight(url) == 1)
        with subprocess.Popen(
            [*CLI, "set", "maintenance", "--wait", "--interval", "0.1"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ) as switching:
            assert switching.stdout is not None
            assert switching.stdout.readline().startswith("draining to maintenance")
            cancelled = subprocess.run(
                [*CLI, "cancel", "--reason", "wrong window"],
                env=env,
                capture_output=True,
                text=True,
                timeout=30,
            )
            _, switch_err = switching.communicate(timeout=15)
        request.join()
        status = httpx2.get(f"{url}/server/status").json()
        [record] = httpx2.get(f"{url}/server/transitions?limit=1").json()["transitions"]
    assert nothing.returncode == 1
    assert nothing.stderr.strip() == (
        "Error: 409 nothing to cancel: no mode change is under way: the server is in "
        "production mode"
    )
    assert cancelled.returncode == 0, cancelled.stderr
    assert cancelled.stdout.strip() == (
        "cancelled: the switch to maintenance was abandoned, production mode stays; "
        "requests still running then: profile=1"
    )
    assert switching.returncode == 1
    assert "mode change cancelled; the server stays in production mode" in switch_err
    assert status["mode"] == "production"
    assert (record["outcome"], record["reason"], record["actor"]) == (
        "cancelled",
        "wrong window",
        "anonymous",
    )


def test_the_console_script_imports_the_app_from_the_current_folder(tmp_path: Path) -> None:
    """`servermode serve --app beside:app`, run where beside.py is, finds it (as uvicorn
    does): a console script's sys.path starts with its own folder, not the current one."""
    (tmp_path / "beside.py").write_text((REPO / "tests" / "e2e" / "orders_app.py").read_text())
    script = Path(sys.executable).parent / "servermode"
    port = free_port()
    argv = [str(script), "serve", "--app", "beside:app", "--port", str(port)]
    with running_process(argv, port, cwd=tmp_path) as url:
        answer = httpx2.get(f"{url}/api/reports")
    assert answer.json() == {"did": "report"}
