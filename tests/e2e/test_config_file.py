"""`servermode serve --config` for an API that is not Context Services (issue 10, done-when):
its own categories and routes, admission per mode and the drain, over HTTP."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest

from .servers import REPO, free_port, running_process

pytestmark = pytest.mark.timeout(60)

CONFIG = REPO / "examples" / "orders.toml"
CLI = [sys.executable, "-m", "servermode.adapters.cli"]


@pytest.fixture
def service() -> Iterator[httpx2.Client]:
    """The orders API gated by `servermode serve --config examples/orders.toml`; the drain
    timeout of the file (30 s) lowered by a flag."""
    port = free_port()
    argv = [
        *CLI,
        "serve",
        "--config",
        str(CONFIG),
        "--app-dir",
        "tests/e2e",
        "--port",
        str(port),
        "--drain-timeout",
        "8",
    ]
    with running_process(argv, port) as url, httpx2.Client(base_url=url, timeout=15) as client:
        yield client


def admitted(client: httpx2.Client) -> dict[str, int]:
    """The status code of one quick request of each category."""
    return {
        "orders": client.get("/api/orders/1").status_code,
        "reports": client.get("/api/reports").status_code,
        "migrations": client.post("/admin/migrations").status_code,
    }


def in_the_background(client: httpx2.Client, method: str, path: str) -> threading.Thread:
    thread = threading.Thread(target=client.request, args=(method, path))
    thread.start()
    return thread


def switch(client: httpx2.Client, mode: str, seen: dict[str, Any]) -> threading.Thread:
    """POST /server/mode in a thread; its answer and how long it took land in ``seen``."""

    def run() -> None:
        started = time.monotonic()
        seen["answer"] = client.post("/server/mode", json={"mode": mode})
        seen["took"] = time.monotonic() - started

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def wait_for_state(client: httpx2.Client, state: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while (status := client.get("/server/status").json())["state"] != state:
        assert time.monotonic() < deadline, status
        time.sleep(0.02)
    return dict(status)


def test_categories_per_mode_and_the_drain(service: httpx2.Client) -> None:
    client = service
    # Production: orders and reports, no migrations.
    assert admitted(client) == {"orders": 200, "reports": 200, "migrations": 503}
    refused = client.post("/admin/migrations")
    assert refused.json()["description"] == (
        "the operation is unavailable while the server is in production mode (migrations request)"
    )
    assert refused.headers["Retry-After"]

    # To maintenance: the drain waits for the running order, not for the running report.
    order = in_the_background(client, "GET", "/api/orders/7?delay=1.5")
    report = in_the_background(client, "GET", "/api/reports?delay=4")
    deadline = time.monotonic() + 5
    while sum(client.get("/server/status").json()["in_flight"].values()) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    # The operator's view: `servermode set --wait` shows what the drain waits for, the order.
    started = time.monotonic()
    operator = subprocess.Popen(
        [*CLI, "set", "maintenance", "--wait", "--interval", "0.1"],
        env={**os.environ, "SERVERMODE_URL": str(client.base_url), "SERVERMODE_ADMIN_TOKEN": ""},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    draining = wait_for_state(client, "draining_to_maintenance")
    assert draining["in_flight"] == {"orders": 1, "reports": 1, "migrations": 0}
    assert draining["waiting_for"] == ["orders"]
    # While it drains: no new order; reports run on (admitted while switching).
    assert client.get("/api/orders/2").status_code == 503
    assert client.get("/api/reports").status_code == 200
    out, err = operator.communicate(timeout=15)
    took = time.monotonic() - started
    order.join()
    assert operator.returncode == 0, err
    *progress, result = out.splitlines()
    assert result == "server changed: maintenance (completed)"
    assert progress[0].startswith("draining to maintenance: 1 in flight (orders 1), ")
    assert 0.8 < took < 3.5  # the order's 1.5 s, not the report's 4 s
    assert client.get("/server/status").json()["in_flight"]["reports"] == 1  # still running
    report.join()

    # Maintenance: migrations and reports, no orders.
    assert admitted(client) == {"orders": 503, "reports": 200, "migrations": 200}

    # Back to production: the drain waits for the running migration.
    migration = in_the_background(client, "POST", "/admin/migrations?delay=2")
    wait_until = time.monotonic() + 5
    while client.get("/server/status").json()["in_flight"]["migrations"] < 1:
        assert time.monotonic() < wait_until
        time.sleep(0.02)
    seen = {}
    switch(client, "production", seen).join()
    migration.join()
    assert seen["answer"].headers["Servermode-Outcome"] == "completed"
    assert seen["took"] >= 0.5  # it waited for the rest of the 2 s migration
    assert admitted(client) == {"orders": 200, "reports": 200, "migrations": 503}

    history = client.get("/server/transitions", params={"limit": 2}).json()["transitions"]
    back, there = history
    assert (there["to_state"], there["stragglers"]) == ("maintenance", {})
    assert there["in_flight"] == {"orders": 1, "reports": 1, "migrations": 0}
    assert (back["to_state"], back["in_flight"]["migrations"]) == ("production", 1)
