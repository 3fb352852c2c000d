"""`make serve` installs what serving needs; the test tools come with `make test` (issue 10)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TEST_TOOLS = {"pytest", "pytest-timeout", "hypothesis", "ruff", "mypy", "schemathesis"}

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def planned(target: str, tmp_path: Path) -> str:
    """What `make TARGET` would run on a fresh machine (a virtual environment not made yet)."""
    # As from a shell: not as a sub-make of `make test` (which would print its directory).
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    result = subprocess.run(
        ["make", "--no-print-directory", "-n", target, f"VENV={tmp_path / '.venv'}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return result.stdout


def test_make_serve_installs_only_the_package(tmp_path: Path) -> None:
    """make serve: `pip install -e .`, no test extra, then the service."""
    plan = planned("serve", tmp_path)
    installs = [line for line in plan.splitlines() if "pip install" in line and "-e" in line]
    assert len(installs) == 1 and installs[0].endswith("-e ."), plan
    assert "[test]" not in plan
    assert plan.rstrip().endswith("-m servermode.adapters.cli serve")


def test_make_test_installs_the_test_tools(tmp_path: Path) -> None:
    """make test: `pip install -e '.[test]'` before the checks."""
    assert "-e '.[test]'" in planned("pytest", tmp_path)


def test_the_package_depends_on_no_test_tool() -> None:
    """The test tools are in the test extra only."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {d.split(">")[0].split("=")[0].split("[")[0] for d in project["dependencies"]}
    assert names & TEST_TOOLS == set()
    extra = {d.split(">")[0] for d in project["optional-dependencies"]["test"]}
    assert extra >= TEST_TOOLS
