"""The state diagram of the admin page: an SVG drawn from the transition table itself.

The boxes are the states of :class:`State`, the arrows and their labels the rows of
:data:`TRANSITIONS` (one arrow per source and destination, its triggers one per line, each with
the timeout policy it holds under when only one), so the page cannot disagree with the machine.
Only where each box sits is chosen here, as data. The page colours the current state's box
(``data-state``) and the arrows that leave it (``data-from``) with CSS; no Graphviz needed.
"""

from __future__ import annotations

import math
from html import escape

from servermode.core import TRANSITIONS, State, Transition

__all__ = ["POSITIONS", "render_svg"]

#: Centre of each state's box: the steady modes on the left and right of the top and bottom
#: rows, each drain beside the mode it leaves, so that the cycle reads clockwise.
POSITIONS: dict[State, tuple[float, float]] = {
    State.PRODUCTION: (136, 70),
    State.DRAINING_TO_MAINTENANCE: (664, 70),
    State.MAINTENANCE: (664, 290),
    State.DRAINING_TO_PRODUCTION: (136, 290),
}
WIDTH, HEIGHT = 800, 360
BOX_WIDTH, BOX_HEIGHT = 248, 48
PARALLEL_GAP = 12  # half the distance between two arrows joining the same pair of states
LABEL_GAP = 8
LINE_HEIGHT = 14
ARROW_GAP = 3  # between an arrow's tip and the box it enters


def _label(transition: Transition) -> str:
    """The trigger, and the timeout policy the row holds under, if only one."""
    policy = transition.only_under
    return transition.trigger.value + (f" [{policy.value}]" if policy is not None else "")


def _edges() -> dict[tuple[State, State], list[str]]:
    """The table's rows grouped by (source, destination), in the table's order."""
    edges: dict[tuple[State, State], list[str]] = {}
    for transition in TRANSITIONS:
        edges.setdefault((transition.source, transition.dest), []).append(_label(transition))
    return edges


def _to_border(dx: float, dy: float) -> float:
    """How far from a box's centre, along the unit direction (dx, dy), its border is."""
    across = (BOX_WIDTH / 2) / abs(dx) if dx else math.inf
    down = (BOX_HEIGHT / 2) / abs(dy) if dy else math.inf
    return min(across, down)


def _arrow(source: State, dest: State, labels: list[str], parallel: bool) -> str:
    (x1, y1), (x2, y2) = POSITIONS[source], POSITIONS[dest]
    length = math.hypot(x2 - x1, y2 - y1)
    dx, dy = (x2 - x1) / length, (y2 - y1) / length
    nx, ny = -dy, dx  # the arrow's right-hand side; the reverse arrow takes the other side
    offset = PARALLEL_GAP if parallel else 0.0
    leave, enter = _to_border(dx, dy), _to_border(dx, dy) + ARROW_GAP
    start = (x1 + dx * leave + nx * offset, y1 + dy * leave + ny * offset)
    end = (x2 - dx * enter + nx * offset, y2 - dy * enter + ny * offset)
    mid = ((start[0] + end[0]) / 2, (start[1] + end[1]) / 2)
    away = offset + LABEL_GAP
    if abs(ny) >= abs(nx):  # a horizontal arrow: the label above or below it, centred
        anchor, x = "middle", mid[0]
        if ny > 0:
            first_y = mid[1] + away + LINE_HEIGHT - 3
        else:
            first_y = mid[1] - away - LINE_HEIGHT * (len(labels) - 1)
    else:  # a vertical arrow: the label beside it, centred on its middle
        anchor = "start" if nx > 0 else "end"
        x = mid[0] + nx * away
        first_y = mid[1] - LINE_HEIGHT * (len(labels) - 1) / 2 + 4
    lines = "".join(
        f'<tspan x="{x:g}" y="{first_y + i * LINE_HEIGHT:g}">{escape(text)}</tspan>'
        for i, text in enumerate(labels)
    )
    return (
        f'<g class="sm-edge" data-from="{source.value}" data-to="{dest.value}">'
        f'<line x1="{start[0]:g}" y1="{start[1]:g}" x2="{end[0]:g}" y2="{end[1]:g}" '
        f'marker-end="url(#sm-arrowhead)"/>'
        f'<text text-anchor="{anchor}">{lines}</text></g>'
    )


def _box(state: State) -> str:
    x, y = POSITIONS[state]
    return (
        f'<g class="sm-state" data-state="{state.value}">'
        f'<rect x="{x - BOX_WIDTH / 2:g}" y="{y - BOX_HEIGHT / 2:g}" width="{BOX_WIDTH}" '
        f'height="{BOX_HEIGHT}" rx="12"/>'
        f'<text x="{x:g}" y="{y + 5:g}" text-anchor="middle">{escape(state.value)}</text></g>'
    )


def render_svg() -> str:
    """The diagram as inline SVG markup (no XML declaration), for the admin page."""
    missing = [state.value for state in State if state not in POSITIONS]
    if missing:
        raise ValueError(f"the state diagram has no place for states {missing}")
    edges = _edges()
    arrows = "".join(
        _arrow(source, dest, labels, (dest, source) in edges)
        for (source, dest), labels in edges.items()
    )
    boxes = "".join(_box(state) for state in State)
    return (
        f'<svg class="statechart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-labelledby="sm-title" xmlns="http://www.w3.org/2000/svg">'
        f'<title id="sm-title">The mode state machine; the current state is highlighted</title>'
        f'<defs><marker id="sm-arrowhead" viewBox="0 0 10 10" refX="10" refY="5" '
        f'markerWidth="10" markerHeight="10" markerUnits="userSpaceOnUse" '
        f'orient="auto-start-reverse">'
        f'<path d="M0,0 L10,5 L0,10 z"/></marker></defs>'
        f"{arrows}{boxes}</svg>"
    )
