"""The README's HTTP and middleware examples, run as written against real servers."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx2
import pytest

from .servers import REPO, free_port, running_process

pytestmark = pytest.mark.timeout(60)

README = (REPO / "README.md").read_text()
DOCUMENTED_PORT = "8080"


def section(heading: str) -> str:
    return README.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]


def console_session(marker: str) -> list[tuple[str, str]]:
    """(command, expected output) pairs of the ```console block after <!-- example: marker -->."""
    block = README.split(f"<!-- example: {marker} -->\n```console\n", 1)[1].split("```", 1)[0]
    pairs: list[tuple[str, str]] = []
    for line in block.splitlines():
        if line.startswith("$ "):
            pairs.append((line[2:], ""))
        else:
            command, output = pairs[-1]
            pairs[-1] = (command, output + line + "\n")
    return pairs


@pytest.mark.skipif(shutil.which("curl") is None, reason="the example uses curl")
@pytest.mark.parametrize("marker", ["http-api", "monitoring", "cancel"])
def test_http_api_session_runs_as_written(marker: str) -> None:
    """Each command of a README session prints exactly the output shown (`servermode` as
    after `make serve` with the environment activated, talking to the service started here)."""
    port = str(free_port())
    serve = [sys.executable, "-m", "servermode.adapters.cli", "serve", "--port", port]
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "SERVERMODE_PORT": port,
        "SERVERMODE_URL": "",
        "SERVERMODE_ADMIN_TOKEN": "",
    }
    with running_process(serve, int(port)):
        for command, expected in console_session(marker):
            result = subprocess.run(
                ["bash", "-c", command.replace(DOCUMENTED_PORT, port)],
                capture_output=True,
                text=True,
                timeout=10,
                env=env,
            )
            printed = result.stdout.replace(port, DOCUMENTED_PORT)
            assert printed.strip() == expected.strip(), command


def test_middleware_example_gates_a_starlette_app(tmp_path: Path) -> None:
    """The 'Gating your own ASGI app' example serves, switches, then refuses profiles."""
    match = re.search(r"```python\n(.*?)```", section("Gating your own ASGI app"), re.S)
    assert match
    (tmp_path / "example.py").write_text(match.group(1))
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", "example:app", "--port", str(port)]
    # The example's admin routes include the probes: the default readiness wait works.
    with running_process(argv, port, cwd=tmp_path) as url:
        before = httpx2.get(f"{url}/profiles/1")
        switch = httpx2.post(f"{url}/server/mode", json={"mode": "maintenance"})
        after = httpx2.get(f"{url}/profiles/1")
    assert before.json() == {"id": "1"}
    assert switch.content == b'{"server changed":"maintenance"}'
    assert after.status_code == 503
    assert "maintenance mode" in after.json()["description"]


def test_persistence_and_auth_example(tmp_path: Path) -> None:
    """The 'With persistence and a token' example: the switch needs the token, and the mode
    survives a restart of the application."""
    match = re.search(r"<!-- example: persistence-and-auth -->\n```python\n(.*?)```", README, re.S)
    assert match
    (tmp_path / "example.py").write_text(match.group(1))
    argv = [sys.executable, "-m", "uvicorn", "example:app", "--port", "{port}"]
    env = {"ADMIN_TOKEN": "s3cret-token"}
    port = free_port()
    run = [a.format(port=port) for a in argv]
    with running_process(run, port, cwd=tmp_path, env=env) as url:
        anonymous = httpx2.post(f"{url}/server/mode", json={"mode": "maintenance"})
        allowed = httpx2.post(
            f"{url}/server/mode",
            json={"mode": "maintenance"},
            headers={"Authorization": "Bearer s3cret-token"},
        )
    port = free_port()
    run = [a.format(port=port) for a in argv]
    with running_process(run, port, cwd=tmp_path, env=env) as url:
        after_restart = httpx2.get(f"{url}/profiles/1")
        status = httpx2.get(f"{url}/server/status").json()
    assert anonymous.status_code == 401
    assert allowed.content == b'{"server changed":"maintenance"}'
    assert (after_restart.status_code, status["mode"]) == (503, "maintenance")
    assert (tmp_path / "var" / "example.db").exists()
