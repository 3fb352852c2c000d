"""The README's embedding example runs as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


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
