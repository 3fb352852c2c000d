"""Which category a request belongs to: method + path rules, as data.

The first rule whose methods and path prefix match decides; unmatched requests get the
default category. Paths are compared in a normal form (no ``.``/``..`` segments, no empty
segments, lower case) so that ``/server/../profiles/1`` or ``/server//status`` cannot borrow the
category of another route. ASGI servers percent-decode ``scope["path"]``, so an encoded slash
(``%2F``) is already a slash here: classification and routing see the same segments.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from servermode.core import AdmissionPolicy

__all__ = ["CONTEXT_SERVICES_RULES", "RouteRule", "RouteRules", "normalise_path"]

ANY_METHOD = "*"


def normalise_path(path: str) -> str:
    """Resolve ``.`` and ``..`` segments and collapse repeated slashes; keep a trailing slash."""
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
    """An ordered list of :class:`RouteRule` and a default category."""

    __slots__ = ("_compiled", "default", "rules")

    def __init__(self, rules: Sequence[RouteRule], default: str) -> None:
        self.rules = tuple(rules)
        self.default = default
        self._compiled = tuple((rule.methods, rule.key, rule.category) for rule in self.rules)

    @classmethod
    def from_table(cls, rows: Iterable[tuple[str, str, str]], *, default: str) -> RouteRules:
        """Build from ``(methods, path prefix, category)`` rows; methods "GET HEAD" or "*"."""
        rules = [RouteRule(path, category, _methods(methods)) for methods, path, category in rows]
        return cls(rules, default)

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
        return frozenset(rule.category for rule in self.rules) | {self.default}

    def check(self, policy: AdmissionPolicy) -> None:
        """Raise ValueError when a rule names a category the policy does not know."""
        unknown = sorted(c for c in self.categories() if c not in policy)
        if unknown:
            raise ValueError(
                f"route rules name categories the admission policy does not know: {unknown}"
            )

    def classify(self, method: str, path: str) -> str:
        """The category of a request; ``path`` must already be in normal form."""
        method = method.upper()
        path = path.lower()
        for methods, prefix, category in self._compiled:
            if methods is not None and method not in methods:
                continue
            if prefix == "/" or path == prefix or path.startswith(prefix + "/"):
                return category
        return self.default

    def __repr__(self) -> str:
        return f"RouteRules({len(self.rules)} rules, default={self.default!r})"


def _methods(spec: str) -> frozenset[str] | None:
    names = frozenset(spec.upper().split())
    if not names or ANY_METHOD in names:
        return None
    return names


_READ = "GET HEAD OPTIONS"

#: The Context Services preset: metadata reads and writes, profiles and customers, services,
#: the mode switch (admin), and the server's own status, health and API description.
CONTEXT_SERVICES_RULES = RouteRules.from_table(
    [
        (_READ, "/metadata", "schema_read"),
        (ANY_METHOD, "/metadata", "schema"),
        (ANY_METHOD, "/profiles", "profile"),
        (ANY_METHOD, "/customers", "profile"),
        (ANY_METHOD, "/services", "service"),
        ("POST", "/server/mode", "admin"),
        (ANY_METHOD, "/server", "server"),
        (ANY_METHOD, "/health", "server"),
        (_READ, "/openapi.json", "server"),
    ],
    default="service",
)
