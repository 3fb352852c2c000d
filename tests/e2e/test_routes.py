"""What servermode owns and what it lets through, against a real uvicorn (issue 9, items 5-7).

servermode owns exact paths under ``/server/``; every other path, whatever its prefix or case,
is the application's and is gated by the route rules. The application here answers every
request it gets with what it got (``tests.e2e.apps:echo``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import httpx2
import pytest
from servermode.adapters.http.openapi import OPENAPI
from servermode.adapters.http.routes import SERVER_ROUTES

from .servers import REPO, ThreadedService, cli, free_port, running_process

pytestmark = pytest.mark.timeout(30)

ECHO = "tests.e2e.apps:echo"

#: Paths that look like servermode's but are not exactly its own: the app's.
LOOKALIKES = [
    ("GET", "/server/export-all-profiles"),
    ("POST", "/SERVER/MODE"),
    ("GET", "/Server/Status"),
    ("GET", "/server/status/"),
    ("GET", "/server/health/live/"),
    ("POST", "/server/mode/"),
]
#: The app's paths that servermode used to hide behind its own routes (item 7).
APP_PATHS = [
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/health/live"),
    ("GET", "/health/ready"),
]


@pytest.mark.parametrize(("method", "path"), LOOKALIKES + APP_PATHS)
def test_app_paths_reach_the_app_in_production(method: str, path: str) -> None:
    """A path that is not exactly servermode's reaches the application, as sent."""
    with ThreadedService(app=ECHO) as running:
        answer = running.client().request(method, path)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"app": f"{method} {path}"}


def test_app_paths_are_gated_by_the_rules_in_maintenance() -> None:
    """In maintenance they are refused as the default category: none runs (item 5)."""
    with ThreadedService(app=ECHO, initial_mode="maintenance") as running:
        client = running.client()
        answers = {f"{m} {p}": client.request(m, p) for m, p in LOOKALIKES + APP_PATHS}
        status = client.get("/server/status").json()
    for sent, answer in answers.items():
        assert answer.status_code == 503, f"{sent} ran in maintenance: {answer.text}"
        assert answer.json()["description"].endswith("(service request)"), sent
    assert status["mode"] == "maintenance"


def test_servermode_routes_live_under_server() -> None:
    """The API description and the probes are servermode's, at /server/... (item 7)."""
    with ThreadedService(app=ECHO, initial_mode="maintenance") as running:
        client = running.client()
        document = client.get("/server/openapi.json")
        live = client.get("/server/health/live")
        ready = client.get("/server/health/ready")
    assert document.json() == json.loads(json.dumps(OPENAPI))
    assert set(document.json()["paths"]) == set(SERVER_ROUTES)
    assert {
        "/server/mode",
        "/server/status",
        "/server/transitions",
        "/server/fleet",  # issue 11: 404 without --fleet
        "/server/health/live",
        "/server/health/ready",
        "/server/openapi.json",
    } <= set(SERVER_ROUTES)
    assert all(path.startswith("/server/") for path in SERVER_ROUTES)
    assert live.json() == {"status": "live"}
    assert (ready.status_code, ready.json()["status"]) == (503, "not ready")


def _readme_rules() -> str:
    """The rules file the README gives as its example."""
    readme = (REPO / "README.md").read_text()
    block = readme.split("<!-- example: rules-file -->\n```json\n", 1)[1].split("```", 1)[0]
    json.loads(block)
    return block


def test_readme_rules_file_keeps_the_operator_in_control(tmp_path: Path) -> None:
    """`serve --rules` with the README's example: switch, status and probes still work (item 6).

    Before, such a file replaced the rules that classified servermode's routes: they fell into
    the default category, so the switch waited for itself, status counted itself, and in
    maintenance status, probes and the way back were refused.
    """
    rules = tmp_path / "rules.json"
    rules.write_text(_readme_rules())
    port = free_port()
    argv = [sys.executable, "-m", "servermode.adapters.cli", "serve", "--port", str(port)]
    argv += ["--rules", str(rules), "--drain-timeout", "2", "--demo-delay", "0"]
    with running_process(argv, port) as url, httpx2.Client(base_url=url, timeout=10) as client:
        status = client.get("/server/status")
        to_maintenance = client.post("/server/mode", json={"mode": "maintenance"})
        during = {
            "status": client.get("/server/status"),
            "live": client.get("/server/health/live"),
            "ready": client.get("/server/health/ready"),
            "history": client.get("/server/transitions"),
            "profile": client.get("/profiles/1"),
        }
        to_production = client.post("/server/mode", json={"mode": "production"})
        after = client.get("/profiles/1")
    assert status.status_code == 200
    assert all(count == 0 for count in status.json()["in_flight"].values()), status.json()
    assert to_maintenance.status_code == 200
    assert to_maintenance.headers["servermode-outcome"] == "completed"
    assert during["status"].status_code == 200
    assert during["status"].json()["mode"] == "maintenance"
    assert all(count == 0 for count in during["status"].json()["in_flight"].values())
    assert during["live"].json() == {"status": "live"}
    assert during["ready"].json()["status"] == "not ready"  # the probe's answer, not the gate's
    assert during["history"].status_code == 200
    assert during["profile"].status_code == 503  # the file's default, refused in maintenance
    assert to_production.status_code == 200
    assert to_production.headers["servermode-outcome"] == "completed"
    assert after.status_code == 200


@pytest.mark.parametrize("path", ["/server", "/server/mode", "/SERVER/HEALTH"])
def test_a_rules_file_that_captures_a_server_route_stops_the_start(
    tmp_path: Path, path: str
) -> None:
    """A rule on servermode's routes is an error at start naming it, not a silent lock-out."""
    rules = tmp_path / "rules.json"
    rows = [{"path": "/orders", "category": "schema_read"}, {"path": path, "category": "server"}]
    rules.write_text(json.dumps({"default": "service", "rules": rows}))
    result = cli("serve", "--port", str(free_port()), "--rules", str(rules), timeout=20)
    assert result.returncode != 0
    assert "Error: route rules" in result.stderr
    assert f"rule 2 (* {path} -> server) covers servermode's own route" in result.stderr
    assert "Traceback" not in result.stderr
