"""The dependency rule, per package: what each layer may import (ARCHITECTURE.md, Layout).

core/ stays framework-free (standard library, transitions, structlog, relative imports);
the store imports neither Starlette nor click; the HTTP adapters import no click.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "core"
ADAPTERS = ROOT / "adapters"
CORE_THIRD_PARTY = {"transitions", "structlog"}
WEB_AND_CLI = {"starlette", "uvicorn", "click", "fastapi", "httpx", "httpx2", "h11", "websockets"}


def imported(path: Path) -> set[str]:
    """Every module ``path`` imports, absolute names, relative ones resolved."""
    package = ".".join(("servermode", *path.relative_to(ROOT).parent.parts))
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                names.add(f"{base}.{node.module}" if node.module else base)
            elif node.module:
                names.add(node.module)
    return names


def offending(folder: Path, forbidden: set[str]) -> set[str]:
    return {
        f"{path.relative_to(ROOT)}: {name}"
        for path in folder.rglob("*.py")
        for name in imported(path)
        if name.split(".")[0] in forbidden or any(name.startswith(f) for f in forbidden)
    }


def test_core_imports_no_framework_and_no_adapter() -> None:
    """Every import in core/ is relative, standard library, transitions or structlog."""
    bad = {
        f"{path.name}: {name}"
        for path in CORE.rglob("*.py")
        for name in imported(path)
        if not name.startswith("servermode.core")
        and name.split(".")[0] not in sys.stdlib_module_names
        and name.split(".")[0] not in CORE_THIRD_PARTY
    }
    assert bad == set()


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("store", {"starlette", "click", "uvicorn", "servermode.adapters.http"}),
        ("store", {"servermode.adapters.cli"}),
        ("http", {"click", "servermode.adapters.cli"}),
    ],
)
def test_adapters_respect_their_roles(package: str, forbidden: set[str]) -> None:
    assert offending(ADAPTERS / package, forbidden) == set()


def test_the_check_sees_imports() -> None:
    """The scans find imports, relative ones too (so an empty result means something)."""
    assert "transitions" in imported(CORE / "machine.py")
    assert "servermode.core.modes" in imported(CORE / "machine.py")
    assert "servermode.adapters.http.problems" in imported(ADAPTERS / "http" / "auth.py")
    assert offending(ADAPTERS / "cli", {"click"})
