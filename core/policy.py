"""Which request categories each state admits, and which ones a drain waits for.

The admission policy is a table; what a drain waits for follows from it and from the drains of
the transition table: the counted requests whose category the drain's target refuses.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from .errors import UnknownCategory
from .machine import DRAINS
from .modes import State

__all__ = ["CONTEXT_SERVICES", "SERVERMODE_CATEGORIES", "AdmissionPolicy", "CategoryRule"]

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

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> AdmissionPolicy:
        """Build a policy from the ``categories`` of a config mapping (``servermode.toml``)::

            {"categories": {"orders": {"admitted_in": ["production"]},
                            "reports": {"admitted_in": ["production", "maintenance"]},
                            "audit": {"admitted_in": ["production"], "counted": False}}}

        ``admitted_in`` lists the states that admit the category (the two modes, and the
        draining states if it may start while a switch is under way); ``counted`` (default
        true) says whether its requests are counted, and so drained. Other keys of
        ``mapping`` are left to their readers (the route rules, the settings).

        servermode's own categories (:data:`SERVERMODE_CATEGORIES`) are added: a mapping may
        not declare them. Any mistake is a ValueError whose message starts with the key
        (``categories.orders.admitted_in: expected ...``).
        """
        categories = mapping.get("categories")
        if not isinstance(categories, Mapping) or not categories:
            raise ValueError(
                "categories: expected a table of categories, each with admitted_in, "
                f"not {_shown(categories)}"
            )
        rules: dict[str, CategoryRule] = {}
        for name, spec in categories.items():
            rules[name] = _category_rule(name, spec)
            try:  # the rules a policy sets each category (the drain rule), named by key
                cls({name: rules[name]})
            except ValueError as exc:
                raise ValueError(f"categories.{name}: {exc}") from None
        return cls({**rules, **SERVERMODE_CATEGORIES})

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


#: servermode's own categories, added to every policy built from a mapping: ``admin`` (the mode
#: switch) and ``server`` (status, history, probes, the API description). Both pass the gate in
#: every state and are never counted: a drain must not wait for the request that asked for it,
#: and a switch refused during a drain is refused (and audited) by the controller, not the gate.
SERVERMODE_CATEGORIES: Mapping[str, CategoryRule] = MappingProxyType(
    {name: CONTEXT_SERVICES.rules[name] for name in ("admin", "server")}
)

_CATEGORY_KEYS = ("admitted_in", "counted")
_CATEGORY_NAME = re.compile(r"[A-Za-z0-9_-]+")
_STATE_NAMES = ", ".join(state.value for state in State)


def _category_rule(name: object, spec: object) -> CategoryRule:
    """One ``categories.<name>`` table as a :class:`CategoryRule`; ValueError naming the key."""
    key = f"categories.{name}"
    if not isinstance(name, str) or not _CATEGORY_NAME.fullmatch(name):
        raise ValueError(
            f"{key}: expected a category name of letters, digits, '_' and '-', not {_shown(name)}"
        )
    if name in SERVERMODE_CATEGORIES:
        raise ValueError(
            f"{key}: expected a category of the application, not servermode's own {name!r} "
            "(admin: the mode switch, server: status and probes; both admitted in every state "
            "and never counted, always there): remove it"
        )
    if not isinstance(spec, Mapping):
        raise ValueError(f"{key}: expected a table with admitted_in, not {_shown(spec)}")
    unknown = [k for k in spec if k not in _CATEGORY_KEYS]
    if unknown:
        raise ValueError(f"{key}.{unknown[0]}: unknown key, expected {' or '.join(_CATEGORY_KEYS)}")
    if "admitted_in" not in spec:
        raise ValueError(
            f"{key}.admitted_in: missing, expected a list of the states that admit it "
            f"({_STATE_NAMES})"
        )
    admitted = spec["admitted_in"]
    if not isinstance(admitted, list | tuple) or not all(isinstance(s, str) for s in admitted):
        raise ValueError(
            f"{key}.admitted_in: expected a list of states ({_STATE_NAMES}), not {_shown(admitted)}"
        )
    states: set[State] = set()
    for text in admitted:
        try:
            states.add(State(text))
        except ValueError:
            raise ValueError(
                f"{key}.admitted_in: expected states among {_STATE_NAMES}, not {text!r}"
            ) from None
    counted = spec.get("counted", True)
    if not isinstance(counted, bool):
        raise ValueError(
            f"{key}.counted: expected true or false (whether a drain waits for it), "
            f"not {_shown(counted)}"
        )
    return CategoryRule(frozenset(states), counted=counted)


def _shown(value: object) -> str:
    """A value as an error message shows it: its repr, shortened; or what is missing."""
    if value is None:
        return "nothing"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
