"""The database file stops taking writes mid-run: switches fail clearly, the old mode stays.

Tests run as root, whom permission bits do not stop, so the service process is given a file
size limit of one byte (``prlimit``, RLIMIT_FSIZE): every write past the first byte of any
file, the database's write-ahead log included, then fails with EFBIG, as on a full disk.
Python ignores SIGXFSZ, so the process lives on and SQLite reports the failed write.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx2
import jsonschema
import pytest
from servermode.adapters.http.openapi import SCHEMAS

from .conftest import FIGURES
from .service import ServiceProcess

pytestmark = [
    pytest.mark.timeout(30),
    pytest.mark.skipif(sys.platform != "linux", reason="prlimit is Linux only"),
]


def writable(service: ServiceProcess, yes: bool) -> None:
    limit = resource.RLIM_INFINITY if yes else 1
    resource.prlimit(service.pid, resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))


def audit_events(service: ServiceProcess) -> list[dict[str, Any]]:
    events = []
    for line in service.output().splitlines():
        if line.startswith("{") and '"mode_transition"' in line:
            events.append(json.loads(line))
    return events


def failed_switch(answer: httpx2.Response) -> None:
    assert answer.status_code == 503
    body = answer.json()
    jsonschema.validate(body, {**SCHEMAS["Error"]})
    assert body["code"] == 5033
    assert "the server mode did not change" in body["description"]


def test_switches_fail_clearly_while_the_file_cannot_be_written(tmp_path: Path) -> None:
    """No write: 503 (5033) and a failed audit event; status keeps the saved mode; then recovery."""
    args = ("--drain-timeout", "5", "--demo-delay", "0")
    with ServiceProcess(tmp_path / "servermode.db", tmp_path / "log", *args, pipe=True) as service:
        client = httpx2.Client(base_url=service.url, timeout=10)
        writable(service, False)

        # 1. The intent cannot be saved: the switch never starts.
        failed_switch(client.post("/server/mode", json={"mode": "maintenance"}))
        status = client.get("/server/status").json()
        assert (status["mode"], status["state"]) == ("production", "production")
        assert client.get("/profiles/1").status_code == 200

        # 2. The intent is saved, then the file stops taking writes mid-drain: the result
        # cannot be saved, and the mode in force stays the saved one.
        writable(service, True)
        with (
            httpx2.Client(base_url=service.url, timeout=10) as slow_client,
            ThreadPoolExecutor(2) as pool,
        ):
            slow = pool.submit(slow_client.get, "/profiles/1", params={"delay": 0.6})
            time.sleep(0.2)
            switching = pool.submit(client.post, "/server/mode", json={"mode": "maintenance"})
            time.sleep(0.2)
            assert client.get("/server/status").json()["state"] == "draining_to_maintenance"
            writable(service, False)
            assert slow.result().status_code == 200
            failed_switch(switching.result())
        status = client.get("/server/status").json()
        assert (status["mode"], status["state"]) == ("production", "production")
        assert client.get("/profiles/1").status_code == 200

        # 3. Writable again: the switch goes through, and the history reads back whole.
        writable(service, True)
        ok = client.post("/server/mode", json={"mode": "maintenance"})
        assert ok.status_code == 200, ok.text
        assert client.get("/server/status").json()["mode"] == "maintenance"
        history = client.get("/server/transitions").json()["transitions"]
        client.close()
    events = audit_events(service)  # all of them: the service has stopped
    FIGURES["faults injected"] += 2
    FIGURES["requests sent"] += 10
    FIGURES["switches made"] += 1
    failed = [e for e in events if e["outcome"] == "failed"]
    assert [(e["from_state"], e["target_mode"]) for e in failed] == [
        ("production", "maintenance"),
        ("production", "maintenance"),
    ]
    assert [r["outcome"] for r in history] == ["completed", "initialized"]
