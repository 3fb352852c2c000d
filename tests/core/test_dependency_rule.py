"""core/ stays framework-free: it imports only the standard library, transitions and structlog."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

CORE = Path(__file__).resolve().parents[2] / "core"
ALLOWED_THIRD_PARTY = {"transitions", "structlog"}


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_core_imports_no_framework_and_no_adapter() -> None:
    """Every import in core/ is relative, standard library, transitions or structlog."""
    offending = {
        f"{path.name}: {root}"
        for path in CORE.glob("*.py")
        for root in imported_roots(path)
        if root not in sys.stdlib_module_names and root not in ALLOWED_THIRD_PARTY
    }
    assert offending == set()


def test_the_check_sees_imports() -> None:
    """The scan above finds imports at all (so an empty result means something)."""
    assert "transitions" in imported_roots(CORE / "machine.py")
