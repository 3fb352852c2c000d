"""The servermode command line, as an operator runs it, against a service it started."""

from __future__ import annotations

import shutil
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from .servers import REPO, cli, free_port, running_process

pytestmark = pytest.mark.timeout(60)

TOKEN = "cli-e2e-token"


@pytest.fixture(scope="module")
def service() -> Iterator[str]:
    """``servermode serve`` in its own process, with an admin token, drain timeout 2 s."""
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "servermode.adapters.cli",
        "serve",
        "--port",
        str(port),
        "--drain-timeout",
        "2",
        "--demo-delay",
        "0.2",
    ]
    with running_process(argv, port, env={"SERVERMODE_ADMIN_TOKEN": TOKEN}) as url:
        yield url


def as_operator(url: str, *args: str, token: str | None = TOKEN) -> tuple[int, str, str]:
    env = {"SERVERMODE_URL": url, "SERVERMODE_TOKEN": token or "", "SERVERMODE_ADMIN_TOKEN": ""}
    result = cli(*args, env=env)
    return result.returncode, result.stdout, result.stderr


class TestAgainstARunningService:
    def test_set_wait_shows_the_drain_then_the_result(self, service: str) -> None:
        """`set maintenance --wait` prints the in-flight count and time left, then the result."""
        slow = threading.Thread(
            target=httpx2.get, args=(f"{service}/profiles/1?delay=2",), kwargs={"timeout": 10}
        )
        slow.start()
        time.sleep(0.2)
        code, out, err = as_operator(
            service, "set", "maintenance", "--wait", "--interval", "0.2", "--reason", "e2e"
        )
        slow.join()
        assert code == 0, err
        lines = out.splitlines()
        assert lines[-1] == "server changed: maintenance (completed)"
        progress = [line for line in lines if line.startswith("draining to maintenance:")]
        assert progress, out
        assert "1 in flight (profile 1)" in progress[0]
        assert progress[0].endswith("s left")

        code, out, _ = as_operator(service, "status")
        assert code == 0
        assert "mode                 maintenance" in out.splitlines()

        code, out, _ = as_operator(service, "history", "--limit", "5")
        assert code == 0
        header, newest, *_ = out.splitlines()
        assert header.split() == [
            "ID", "AT", "OUTCOME", "FROM", "TO", "MS", "ACTOR", "CLIENT", "STRAGGLERS", "REASON"
        ]  # fmt: skip
        assert newest.split()[3:6] == ["completed", "production", "maintenance"]
        assert newest.split()[7] == "admin"
        assert newest.split()[-1] == "e2e"

        code, out, _ = as_operator(service, "set", "PRODUCTION")
        assert (code, out.strip()) == (0, "server changed: production (completed)")

    def test_wrong_token_is_reported(self, service: str) -> None:
        """A refused request exits non-zero with the service's description."""
        code, _, err = as_operator(service, "set", "maintenance", token="wrong")
        assert code == 1
        assert "401 unauthorized: invalid bearer token" in err

    def test_status_json(self, service: str) -> None:
        """`status --json` prints the status document."""
        code, out, _ = as_operator(service, "status", "--json")
        assert code == 0
        assert '"request_today"' in out


def test_unreachable_service_is_reported() -> None:
    """Talking to nothing says so, without a traceback."""
    code, _, err = as_operator(f"http://127.0.0.1:{free_port()}", "status")
    assert code == 1
    assert "cannot reach servermode" in err
    assert "Traceback" not in err


def test_serve_refuses_a_public_address_without_a_token() -> None:
    """`serve --host 0.0.0.0` without an admin token exits at once, explaining why."""
    result = cli("serve", "--host", "0.0.0.0", "--port", str(free_port()))
    assert result.returncode == 1
    assert "not a loopback address, without an admin token" in result.stderr
    assert "--insecure" in result.stderr


def test_serve_reports_bad_settings() -> None:
    """A bad setting is named, and nothing is served."""
    result = cli("serve", "--drain-timeout", "-1")
    assert result.returncode == 2  # click's usage error: the flag is named
    assert "Invalid value for '--drain-timeout'" in result.stderr
    assert "drain timeout must be between 0 and 604800 seconds, not -1" in result.stderr


class TestDiagram:
    def test_mermaid(self) -> None:
        """The default diagram is Mermaid drawn from the transition table."""
        result = cli("diagram")
        assert result.returncode == 0
        assert "stateDiagram-v2" in result.stdout
        assert "production --> draining_to_maintenance: start_maintenance" in result.stdout

    def test_dot(self) -> None:
        """--format dot prints Graphviz source."""
        result = cli("diagram", "--format", "dot")
        assert result.returncode == 0
        assert result.stdout.lstrip().startswith("digraph")

    @pytest.mark.skipif(shutil.which("dot") is None, reason="svg needs Graphviz's dot")
    def test_svg_to_a_file(self, tmp_path: Path) -> None:
        """--format svg -o FILE writes an SVG image."""
        target = tmp_path / "mode.svg"
        result = cli("diagram", "--format", "svg", "-o", str(target))
        assert result.returncode == 0
        assert "<svg" in target.read_text()


def test_console_script_is_installed() -> None:
    """`servermode` is on the virtual environment's PATH as a console script."""
    script = Path(sys.executable).parent / "servermode"
    assert script.exists()


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_serve_starts_the_service() -> None:
    """`make serve` starts the service on 127.0.0.1 with its embedded defaults."""
    port = free_port()  # only the port differs from the defaults: 8080 may be taken here
    with running_process(["make", "serve"], port, env={"SERVERMODE_PORT": str(port)}) as url:
        status = httpx2.get(f"{url}/server/status").json()
        demo = httpx2.get(f"{url}/").json()
    assert status["mode"] == "production"
    assert demo["demo"] == "servermode"
    assert REPO.joinpath("Makefile").read_text().count("servermode.adapters.cli serve") == 1
