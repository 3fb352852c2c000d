"""Diagrams of the mode machine, rendered by transitions' GraphMachine from the same table.

Mermaid needs nothing beyond transitions; DOT source needs the ``graphviz`` Python package
(the ``dot`` binary is only needed to turn it into SVG).
"""

from __future__ import annotations

from typing import Literal

from .machine import machine_kwargs
from .modes import State

__all__ = ["render", "write"]

Format = Literal["mermaid", "dot"]
TITLE = "servermode"


class _DiagramModel:
    """The conditions the table names, so that GraphMachine accepts it; never evaluated."""

    def forces_on_timeout(self) -> bool:  # pragma: no cover - drawing does not call it
        return True


def render(fmt: Format = "mermaid") -> str:
    """The state diagram of :data:`servermode.core.machine.TRANSITIONS` as Mermaid or DOT text."""
    from transitions.extensions import GraphMachine

    engine: Literal["mermaid", "graphviz"] = "mermaid" if fmt == "mermaid" else "graphviz"
    model = _DiagramModel()
    GraphMachine(
        model=model,
        graph_engine=engine,
        show_conditions=True,
        title=TITLE,
        **machine_kwargs(State.PRODUCTION),
    )
    graph = model.get_graph()  # type: ignore[attr-defined]
    if fmt == "dot":
        return str(graph.source)
    text = str(graph.draw(None))
    # transitions writes "Class"; Mermaid's keyword is lower case and GitHub rejects the other.
    return (
        "\n".join(
            "  class" + line[len("  Class") :] if line.startswith("  Class ") else line.rstrip()
            for line in text.splitlines()
        )
        + "\n"
    )


def write(directory: str) -> list[str]:
    """Write ``server_mode.mmd`` and ``server_mode.dot`` into ``directory``; return their paths."""
    from pathlib import Path

    paths = []
    for fmt, suffix in (("mermaid", "mmd"), ("dot", "dot")):
        path = Path(directory) / f"server_mode.{suffix}"
        path.write_text(render(fmt))  # type: ignore[arg-type]
        paths.append(str(path))
    return paths
