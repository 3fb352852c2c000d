"""Which request categories each state admits, and which ones a drain waits for.

The admission policy is a table; what a drain waits for follows from it and from the drains of
the transition table: the counted requests whose category the drain's target refuses.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .errors import UnknownCategory
from .machine import DRAINS
from .modes import State

__all__ = ["CONTEXT_SERVICES", "AdmissionPolicy", "CategoryRule"]

ALWAYS: frozenset[State] = frozenset(State)


@dataclass(frozen=True, slots=True)
class CategoryRule:
    """Where one category is admitted, and whether its requests are drained.

    An uncounted category (status, health, the mode switch itself) is never waited for: a drain
    that waited for the request that asked for it would never end.
    """

    admitted_in: frozenset[State]
    counted: bool = True


class AdmissionPolicy:
    """An immutable map from category to :class:`CategoryRule`.

    A drain waits for the counted requests whose category its target state refuses (the
    outgoing kind, :meth:`outgoing`); the others keep running. A counted category may be
    admitted while draining to a state only if that state admits it too: such requests are
    never waited for. Admitted while draining but refused by the target, they could never be
    waited out (each new one would keep the drain going, or run on in a state that refuses
    it), so such a policy is refused with a ValueError.
    """

    __slots__ = ("_by_state", "_outgoing", "rules")

    def __init__(self, rules: Mapping[str, CategoryRule]) -> None:
        if not rules:
            raise ValueError("an admission policy needs at least one category")
        self.rules: Mapping[str, CategoryRule] = dict(rules)
        for route in DRAINS.values():
            for name, rule in self.rules.items():
                if (
                    rule.counted
                    and route.state in rule.admitted_in
                    and route.leads_to not in rule.admitted_in
                ):
                    raise ValueError(
                        f"category {name!r} is counted and admitted in {route.state} but not "
                        f"in {route.leads_to}: a drain to {route.leads_to} could never wait it "
                        f"out; admit it in {route.leads_to} too, refuse it in {route.state}, "
                        "or make it uncounted"
                    )
        # Per draining state, what it waits for: counted, and refused where the drain leads.
        self._outgoing: dict[State, tuple[str, ...]] = {
            route.state: tuple(
                name
                for name, rule in self.rules.items()
                if rule.counted and route.leads_to not in rule.admitted_in
            )
            for route in DRAINS.values()
        }
        # Precomputed per state so that admission is one dict lookup on the hot path.
        self._by_state: dict[State, dict[str, bool]] = {
            state: {
                name: rule.counted for name, rule in self.rules.items() if state in rule.admitted_in
            }
            for state in State
        }

    @classmethod
    def from_table(
        cls,
        table: Mapping[str, Iterable[str]],
        *,
        uncounted: Iterable[str] = (),
    ) -> AdmissionPolicy:
        """Build a policy from ``{category: [state names]}``; ``uncounted`` are never drained."""
        skip = set(uncounted)
        unknown = skip - set(table)
        if unknown:
            raise ValueError(f"uncounted categories not in the table: {sorted(unknown)}")
        return cls(
            {
                name: CategoryRule(frozenset(State(s) for s in states), counted=name not in skip)
                for name, states in table.items()
            }
        )

    @property
    def categories(self) -> tuple[str, ...]:
        return tuple(self.rules)

    @property
    def counted_categories(self) -> tuple[str, ...]:
        return tuple(name for name, rule in self.rules.items() if rule.counted)

    def outgoing(self, state: State) -> tuple[str, ...]:
        """The categories a drain in ``state`` waits for (none in a steady state)."""
        return self._outgoing.get(state, ())

    def admitted(self, state: State) -> dict[str, bool]:
        """The categories ``state`` admits, each mapped to whether it is counted."""
        return self._by_state[state]

    def admits(self, state: State, category: str) -> bool:
        if category not in self.rules:
            raise UnknownCategory(category)
        return category in self._by_state[state]

    def __contains__(self, category: object) -> bool:
        return category in self.rules

    def __repr__(self) -> str:
        return f"AdmissionPolicy({sorted(self.rules)})"


_STEADY = ("production", "maintenance")

_ANY = [s.value for s in ALWAYS]

#: The Context Services preset (ARCHITECTURE.md, "The gate"). While a switch is under way
#: every web-service request gets 503. ``admin`` (the mode change itself) passes the gate in
#: every state because the controller refuses a change during a drain itself: that refusal
#: is audited as an attempt, which a refusal at the gate would not be.
CONTEXT_SERVICES = AdmissionPolicy.from_table(
    {
        "profile": ["production"],
        "service": ["production"],
        "schema": ["maintenance"],
        "schema_read": _STEADY,
        "admin": _ANY,
        "server": _ANY,
    },
    uncounted=["admin", "server"],
)
