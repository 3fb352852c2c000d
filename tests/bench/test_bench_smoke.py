"""Every benchmark script runs end to end with tiny counts, so that none of them can rot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.http_overhead import installed_stacks

ROOT = Path(__file__).resolve().parents[2]

# script -> the checks it must report (the targets it measures)
SCRIPTS = {
    "admission": {"gate / bare counter, 1 thread", "gate / bare counter, 2 threads"},
    "switch_latency": {
        "p99 release -> new mode in force, loop thread",
        "p99 release -> new mode in force, other thread",
    },
    "asgi_overhead": {
        "GateMiddleware / bare throughput",
        "GateMiddleware / BaseHTTPMiddleware gate throughput",
    },
    "http_overhead": {
        f"GateMiddleware / bare requests per second, {stack}" for stack in installed_stacks()
    },
    "shipped_service": {
        "serve --no-access-log / uvicorn APP --no-access-log",
        "serve --no-access-log / the same composition under uvicorn",
        "servermode's access log cost / uvicorn's",
    },
    "refusal_throughput": {
        "gate 503 / bare 200 throughput, in process",
        "gate 503 / bare 200 requests per second, end to end",
    },
    "status_throughput": {
        "status / bare JSON throughput, in process",
        "status / bare JSON requests per second, end to end",
    },
    # No target: the issue asks for the figures (SQLite next to in-memory, and what FULL costs).
    "idle_switch": set(),
    "fleet": {"fleet gate / lone gate, admit + release"},
    "scale": {
        "worst last release -> new mode in force, quiet loop",
        "worst switch's own share, requests awaited",
        "extra memory per in-flight request (worst round)",
    },
}


def run_quick(script: str, tmp_path: Path, *extra: str) -> dict[str, Any]:
    out = tmp_path / f"{script}.json"
    done = subprocess.run(
        [sys.executable, "-m", f"bench.{script}", "--quick", "--json", str(out), *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert f"== {script} (quick)" in done.stdout
    result: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    return result


@pytest.mark.timeout(30)
@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_script_reports_its_checks(script: str, tmp_path: Path) -> None:
    """A quick run exits 0 and writes JSON naming the machine and every target it measures."""
    result = run_quick(script, tmp_path)
    assert (result["name"], result["quick"]) == (script, True)
    assert result["machine"]["nproc"] >= 1
    assert {check["name"] for check in result["checks"]} == SCRIPTS[script]
    assert all(isinstance(v, float | int) for v in result["figures"].values())


@pytest.mark.timeout(30)
def test_scale_gate_memory_per_request_is_small(tmp_path: Path) -> None:
    """The gate's extra memory per in-flight request is a ticket's worth, far under 1 KiB."""
    figures = run_quick("scale", tmp_path)["figures"]
    assert 0 < figures["extra bytes per request"] < 1024


@pytest.mark.timeout(30)
# http_overhead drives its fresh servers as refusal_throughput does: one of the two suffices.
@pytest.mark.parametrize("script", ["status_throughput", "refusal_throughput"])
def test_http_benchmarks_run_without_wrk(script: str, tmp_path: Path) -> None:
    """The asyncio load generator stands in for wrk, and the report says it was used."""
    result = run_quick(script, tmp_path, "--load-generator", "asyncio")
    assert result["params"]["load_generator"] == "asyncio"
    assert all(value > 0 for key, value in result["figures"].items() if "requests/s" in key)


@pytest.mark.timeout(30)
def test_idle_switch_reports_every_store(tmp_path: Path) -> None:
    """p50 and p99 of an idle switch for the in-memory store and SQLite at each sync level."""
    figures = run_quick("idle_switch", tmp_path)["figures"]
    for store in ("in memory", "SQLite FULL", "SQLite NORMAL", "SQLite OFF", "fsync"):
        assert 0 < figures[f"{store} p50 ms"] <= figures[f"{store} p99 ms"]
