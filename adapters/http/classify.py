"""Which category a request belongs to: servermode's own routes, then method + path rules.

servermode classifies its own routes itself (:mod:`.routes`: exact paths, matched exactly as
the dispatch that serves them matches; the mode switch is ``admin``, the rest ``server``).
Every other request is the application's: the first rule whose methods and path prefix match
decides, and unmatched requests get the default category. No rule can capture servermode's
routes: a rule whose path is one of them, or a prefix of one (``/server``, ``/server/health``),
is refused when the rules are built, naming the rule; the catch-all ``/`` is allowed, and like
any rule it never applies to servermode's paths.

Paths are compared in a normal form (no ``.``/``..`` segments, no empty segments) so that
``/server/../profiles/1`` or ``/profiles//1`` cannot borrow the category of another route, and
rules compare it in lower case, so that ``/PROFILES/1`` is a profile request. ASGI servers
percent-decode ``scope["path"]``, so an encoded slash (``%2F``) is already a slash here:
classification and routing see the same segments.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from servermode.core import AdmissionPolicy

from .routes import ADMIN, SERVER, SERVER_CATEGORIES, SERVER_ROUTES

__all__ = ["CONTEXT_SERVICES_RULES", "RouteRule", "RouteRules", "normalise_path"]

ANY_METHOD = "*"


def normalise_path(path: str) -> str:
    """Resolve ``.`` and ``..`` segments and collapse repeated slashes; keep a trailing slash."""
    if path.startswith("/") and "//" not in path and "/." not in path:
        # No empty, "." or ".." segment can hide here: already normal (the common case, and
        # this runs on every request).
        return path
    segments: list[str] = []
    for segment in path.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if segments:
                segments.pop()
            continue
        segments.append(segment)
    normal = "/" + "/".join(segments)
    if segments and path.endswith(("/", "/.", "/..")):
        normal += "/"
    return normal


@dataclass(frozen=True, slots=True)
class RouteRule:
    """Requests whose method is in ``methods`` (None: any) under ``prefix`` are ``category``."""

    prefix: str
    category: str
    methods: frozenset[str] | None = None

    def __post_init__(self) -> None:
        if not self.prefix.startswith("/"):
            raise ValueError(f"a rule's path must start with '/': {self.prefix!r}")

    @property
    def key(self) -> str:
        """The prefix as compared: normal form, lower case, no trailing slash."""
        return normalise_path(self.prefix).lower().rstrip("/") or "/"


class RouteRules:
    """An ordered list of :class:`RouteRule` and a default category, for the app's paths.

    ``classify`` puts servermode's own routes in their categories first (no rule can change
    them; a rule that tries is a ValueError here), then applies the rules.
    """

    __slots__ = ("_anywhere", "_by_segment", "_decided", "default", "rules")

    def __init__(self, rules: Sequence[RouteRule], default: str) -> None:
        self.rules = tuple(rules)
        self.default = default
        for number, rule in enumerate(self.rules, start=1):
            _refuse_capture(number, rule)
        # A rule can only match paths whose first segment is its own (or any path, for "/"):
        # per first segment, the rules that may match, in their order. One lookup per request
        # instead of a walk through every rule.
        compiled = [(rule.methods, rule.key, rule.key + "/", rule.category) for rule in self.rules]
        self._anywhere: tuple[_Compiled, ...] = tuple(r for r in compiled if r[1] == "/")
        self._by_segment: dict[str, tuple[_Compiled, ...]] = {
            first: tuple(r for r in compiled if r[1] == "/" or _first_segment(r[1]) == first)
            for first in {_first_segment(r[1]) for r in compiled if r[1] != "/"}
        }
        # Where every candidate's prefix is one segment (or "/"), all of them match any path
        # under that segment, so the method alone decides: a table per segment.
        self._decided: dict[str, tuple[dict[str, str], str]] = {
            first: _by_method(candidates, default)
            for first, candidates in self._by_segment.items()
            if all(prefix.count("/") == 1 for _, prefix, _, _ in candidates)
        }

    @classmethod
    def from_table(cls, rows: Iterable[tuple[str, str, str]], *, default: str) -> RouteRules:
        """Build from ``(methods, path prefix, category)`` rows; methods "GET HEAD" or "*"."""
        rules = [RouteRule(path, category, _methods(methods)) for methods, path, category in rows]
        return cls(rules, default)

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> RouteRules:
        """Build from the ``routes`` and ``default_category`` of a config mapping::

            {"default_category": "orders",
             "routes": [{"methods": ["GET", "HEAD"], "path": "/api/reports", "category": "reports"},
                        {"path": "/admin/migrations", "category": "migrations"}]}

        ``methods`` is optional (any method); ``routes`` may be empty or absent. Other keys
        of ``mapping`` are left to their readers (the policy, the settings). Any mistake is a
        ValueError whose message starts with the key (``routes[2].path: expected ...``; routes
        are counted from 1).
        """
        default = mapping.get("default_category")
        if not isinstance(default, str) or not default:
            raise ValueError(
                "default_category: expected the category of requests no route matches, "
                f"not {_shown(default)}"
            )
        routes = mapping.get("routes", [])
        if not isinstance(routes, list | tuple):
            raise ValueError(f"routes: expected a list of routes, not {_shown(routes)}")
        rules = [_route_rule(number, row) for number, row in enumerate(routes, start=1)]
        try:
            return cls(rules, default)
        except ValueError as exc:
            raise ValueError(f"routes: {exc}") from None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RouteRules:
        """Build from ``{"default": c, "rules": [{"methods": [m], "path": p, "category": c}]}``."""
        try:
            rows = [
                (" ".join(row.get("methods") or [ANY_METHOD]), row["path"], row["category"])
                for row in data["rules"]
            ]
            default = data["default"]
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(
                f"route rules need 'default' and 'rules' with path and category: {exc!r}"
            ) from exc
        if not isinstance(default, str) or not all(isinstance(v, str) for row in rows for v in row):
            raise ValueError("route rules: paths, categories and methods must be strings")
        return cls.from_table(rows, default=default)

    def categories(self) -> frozenset[str]:
        """Every category ``classify`` can return, servermode's own included."""
        return frozenset(rule.category for rule in self.rules) | {self.default} | SERVER_CATEGORIES

    def check(self, policy: AdmissionPolicy) -> None:
        """Raise ValueError when a rule names a category the policy does not know."""
        unknown = sorted(c for c in self.categories() if c not in policy)
        if unknown:
            raise ValueError(
                f"route rules name categories the admission policy does not know: {unknown}"
            )

    def classify(self, method: str, path: str) -> str:
        """The category of a request; ``path`` must already be in normal form."""
        admin_methods = SERVER_ROUTES.get(path)  # server_category, inline: every request
        if admin_methods is not None:
            return ADMIN if method in admin_methods else SERVER
        method = method.upper()
        path = path.lower()
        first = path[1:].partition("/")[0]  # _first_segment, inline
        decided = self._decided.get(first)
        if decided is not None:
            by_method, other = decided
            return by_method.get(method, other)
        candidates = self._by_segment.get(first, self._anywhere)
        for methods, prefix, under, category in candidates:
            if methods is not None and method not in methods:
                continue
            if prefix == "/" or path == prefix or path.startswith(under):
                return category
        return self.default

    def __repr__(self) -> str:
        return f"RouteRules({len(self.rules)} rules, default={self.default!r})"


# (methods or None for any, prefix key, prefix key + "/", category)
_Compiled = tuple[frozenset[str] | None, str, str, str]


def _refuse_capture(number: int, rule: RouteRule) -> None:
    """A rule that would match one of servermode's paths is a mistake: say which and why.

    "Would match" is the rules' own test (the rule's path in lower case equals the path, or is
    a whole-segment prefix of it), whatever the rule's methods. The catch-all ``/`` is the
    exception: it is the default under another name, and servermode's paths are classified
    before any rule is consulted, so it simply does not apply to them.
    """
    if rule.key == "/":
        return
    captured = sorted(p for p in SERVER_ROUTES if p == rule.key or p.startswith(rule.key + "/"))
    if captured:
        methods = " ".join(sorted(rule.methods)) if rule.methods is not None else ANY_METHOD
        remedy = "remove the rule"
        if rule.key not in SERVER_ROUTES:
            remedy += f", or name the application's paths under {rule.prefix} one by one"
        raise ValueError(
            f"rule {number} ({methods} {rule.prefix} -> {rule.category}) covers servermode's own "
            f"route{'s' if len(captured) > 1 else ''} {', '.join(captured)}: servermode "
            f"classifies its routes itself (the mode switch 'admin', the others 'server'); "
            f"{remedy}"
        )


_ROUTE_KEYS = ("methods", "path", "category")
_METHOD = re.compile(r"[A-Za-z]+|\*")


def _route_rule(number: int, row: object) -> RouteRule:
    """One ``routes`` entry as a :class:`RouteRule`; ValueError naming the key."""
    key = f"routes[{number}]"
    if not isinstance(row, Mapping):
        raise ValueError(f"{key}: expected a table with path and category, not {_shown(row)}")
    unknown = [k for k in row if k not in _ROUTE_KEYS]
    if unknown:
        raise ValueError(f"{key}.{unknown[0]}: unknown key, expected {', '.join(_ROUTE_KEYS)}")
    path = row.get("path")
    if not isinstance(path, str) or not path.startswith("/"):
        raise ValueError(f"{key}.path: expected a path starting with '/', not {_shown(path)}")
    category = row.get("category")
    if not isinstance(category, str) or not category:
        raise ValueError(f"{key}.category: expected a category name, not {_shown(category)}")
    methods = row.get("methods", [ANY_METHOD])
    if (
        not isinstance(methods, list | tuple)
        or not methods
        or not all(isinstance(m, str) and _METHOD.fullmatch(m) for m in methods)
    ):
        raise ValueError(
            f'{key}.methods: expected a list of HTTP methods such as ["GET", "HEAD"] '
            f'(or ["*"]: any), not {_shown(methods)}'
        )
    rule = RouteRule(path, category, _methods(" ".join(methods)))
    try:
        _refuse_capture(number, rule)
    except ValueError as exc:
        raise ValueError(f"{key}.path: {exc}") from None
    return rule


def _shown(value: object) -> str:
    """A value as an error message shows it: its repr, shortened; or what is missing."""
    if value is None:
        return "nothing"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _first_segment(path: str) -> str:
    """``"/profiles/1"`` -> ``"profiles"``; ``"/"`` -> ``""``."""
    return path[1:].partition("/")[0]


def _by_method(candidates: Sequence[_Compiled], default: str) -> tuple[dict[str, str], str]:
    """For rules that all match the path: the category per named method, and for the others."""
    other = next((category for methods, _, _, category in candidates if methods is None), default)
    named = {m for methods, _, _, _ in candidates if methods is not None for m in methods}
    by_method = {
        method: next(
            (c for methods, _, _, c in candidates if methods is None or method in methods), default
        )
        for method in named
    }
    return by_method, other


def _methods(spec: str) -> frozenset[str] | None:
    names = frozenset(spec.upper().split())
    if not names or ANY_METHOD in names:
        return None
    return names


_READ = "GET HEAD OPTIONS"

#: The Context Services preset: metadata reads and writes, profiles and customers, services.
#: (servermode's own routes need no rule: they are classified before the rules.)
CONTEXT_SERVICES_RULES = RouteRules.from_table(
    [
        (_READ, "/metadata", "schema_read"),
        (ANY_METHOD, "/metadata", "schema"),
        (ANY_METHOD, "/profiles", "profile"),
        (ANY_METHOD, "/customers", "profile"),
        (ANY_METHOD, "/services", "service"),
    ],
    default="service",
)
