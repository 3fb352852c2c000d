"""What ``servermode config`` prints: the effective settings, policy and route rules, and where
each value came from. Tokens are never shown, only whether one is set and from where."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from servermode.core import SERVERMODE_CATEGORIES, State

from ..http.routes import MODE_PATH, SERVER_ROUTES
from .options import Resolved
from .settings import Settings

__all__ = ["MASK", "effective_config", "format_config"]

#: What a token set shows as.
MASK = "********"
_TOKENS = ("admin_token", "read_token")


def effective_config(resolved: Resolved) -> dict[str, Any]:
    """The settings, categories and routes of ``resolved``, as JSON-ready data."""
    settings = []
    for spec in fields(Settings):
        value = getattr(resolved.settings, spec.name)
        if spec.name in _TOKENS:
            value = MASK if value is not None else None
        settings.append(
            {"name": spec.name, "value": value, "from": resolved.sources.get(spec.name, "default")}
        )
    for name in ("admin_token_file", "read_token_file"):
        settings.append({"name": name, "value": None, "from": resolved.sources[name]})
    policy = resolved.policy
    rules = resolved.rules()
    return {
        "config": None
        if resolved.config is None
        else {"path": str(resolved.config.path), "from": resolved.sources["config"]},
        "settings": _with_token_file_values(settings, resolved),
        "categories": {
            "from": resolved.policy_source,
            "states": [state.value for state in State],
            "categories": [
                {
                    "name": name,
                    "admitted_in": [s.value for s in State if s in rule.admitted_in],
                    "counted": rule.counted,
                    "servermode": name in SERVERMODE_CATEGORIES,
                }
                for name, rule in policy.rules.items()
            ],
        },
        "routes": {
            "from": resolved.rules_source,
            "rules": [
                {
                    "methods": sorted(rule.methods) if rule.methods is not None else ["*"],
                    "path": rule.prefix,
                    "category": rule.category,
                }
                for rule in rules.rules
            ],
            "default_category": rules.default,
            "servermode": {path: _own_category(path) for path in SERVER_ROUTES},
        },
    }


def _with_token_file_values(settings: list[dict[str, Any]], resolved: Resolved) -> Any:
    """The token files' paths (not secret), read back from where the tokens came from."""
    for entry in settings:
        if entry["name"].endswith("_token_file"):
            token_from = resolved.sources[entry["name"].removesuffix("_file")]
            if token_from.startswith("file "):
                entry["value"] = token_from.removeprefix("file ").split(" (", 1)[0]
    return settings


def _own_category(path: str) -> str:
    admin = sorted(SERVER_ROUTES[path])
    return f"{' '.join(admin)}: admin, others: server" if path == MODE_PATH else "server"


def format_config(report: dict[str, Any]) -> str:
    """The report as text: a few tables an operator reads at a glance."""
    out: list[str] = []
    config = report["config"]
    out.append(
        f"config file: {config['path']} ({config['from']})"
        if config
        else "config file: none (--config FILE or SERVERMODE_CONFIG)"
    )
    out.append("")
    rows = [["SETTING", "VALUE", "FROM"]]
    for entry in report["settings"]:
        value = entry["value"]
        shown = "-" if value is None else str(value).lower() if isinstance(value, bool) else value
        rows.append([entry["name"], str(shown), entry["from"]])
    out += _table(rows)

    categories = report["categories"]
    out += ["", f"CATEGORIES ({categories['from']}): the states that admit each"]
    states = categories["states"]
    rows = [["CATEGORY", *states, "COUNTED"]]
    for entry in categories["categories"]:
        admitted = ["yes" if state in entry["admitted_in"] else "-" for state in states]
        counted = "yes" if entry["counted"] else "no"
        if entry["servermode"]:
            counted += " (servermode's own)"
        rows.append([entry["name"], *admitted, counted])
    out += _table(rows)
    out.append("A drain waits for the counted requests whose category its target refuses.")

    routes = report["routes"]
    out += ["", f"ROUTES ({routes['from']}): the first that matches decides"]
    rows = [["METHODS", "PATH", "CATEGORY"]]
    for rule in routes["rules"]:
        rows.append([" ".join(rule["methods"]), rule["path"], rule["category"]])
    rows.append(["*", "anything else", f"{routes['default_category']} (the default)"])
    out += _table(rows)
    own = ", ".join(sorted(routes["servermode"]))
    out.append(f"servermode's own routes come first: POST {MODE_PATH} is admin; any other")
    out.append(f"request to {own} is server")
    return "\n".join(out)


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
