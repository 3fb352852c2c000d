"""The README's examples that need no server run as written."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def python_block_under(heading: str) -> str:
    section = README.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, f"no python example under '{heading}'"
    return match.group(1)


def test_embedding_example_runs_as_written() -> None:
    """The core example prints the refusal and a completed switch."""
    result = subprocess.run(
        [sys.executable, "-c", python_block_under("Embedding the core")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert "profile requests are unavailable while the server is draining_to_maintenance" in (
        result.stdout
    )
    assert result.stdout.strip().endswith("completed")


def block_after(marker: str, language: str) -> str:
    """The fenced block of ``language`` right after ``<!-- example: marker -->``."""
    opening = f"<!-- example: {marker} -->\n```{language}\n"
    assert opening in README, f"no {language} example '{marker}'"
    return README.split(opening, 1)[1].split("```", 1)[0]


def test_the_config_file_example_is_the_shipped_one() -> None:
    """The README's config file is examples/orders.toml, which the e2e test serves."""
    assert block_after("config-file", "toml") == (ROOT / "examples" / "orders.toml").read_text()


def test_the_mapping_example_builds_the_policy_and_rules() -> None:
    """The 'same in code' example runs from the repository and prints what the text says."""
    result = subprocess.run(
        [sys.executable, "-c", block_after("from-mapping", "python")],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "migrations False\n"
    assert "It prints `migrations False`." in README


def test_the_structlog_example_routes_the_audit() -> None:
    """With the structlog example first, the embedding example's transitions are JSON lines
    on stderr from servermode.audit; nothing else is printed."""
    code = block_after("structlog", "python") + python_block_under("Embedding the core")
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stderr.splitlines()]
    assert [(e["logger"], e["event"], e["outcome"]) for e in events] == [
        ("servermode.audit", "mode_transition", "initialized"),
        ("servermode.audit", "mode_transition", "completed"),
    ]
    assert result.stdout.strip().endswith("completed")
