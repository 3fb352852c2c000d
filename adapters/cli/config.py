"""``servermode.toml``: the categories, the route rules and the settings of a service, one file.

::

    default_category = "orders"            # requests no route matches

    [categories.orders]                    # one table per category of the application
    admitted_in = ["production"]           # the states that admit it
    [categories.migrations]
    admitted_in = ["maintenance"]
    counted = true                         # a drain waits for it (the default)

    [[routes]]                             # the first route that matches decides
    methods = ["POST"]                     # optional: any method
    path = "/admin/migrations"
    category = "migrations"

    [serve]                                # any setting `servermode serve` has a flag for
    port = 8080
    drain_timeout = 30

Every table is optional. Without ``categories`` the Context Services policy applies, without
``default_category`` and ``routes`` its route rules. servermode's own categories (``admin``,
``server``) are always there and may not be declared. Relative paths in ``[serve]`` are read
from the file's folder. Any mistake, an unknown key included (a typo must not silently drop a
rule), is a :class:`ConfigError` naming the file, the key and what was expected.
"""

from __future__ import annotations

import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from servermode.core import CONTEXT_SERVICES, AdmissionPolicy, Mode, TimeoutPolicy

from ..http.classify import CONTEXT_SERVICES_RULES, RouteRules
from ..store.factory import MEMORY
from .logging import LOG_LEVELS
from .settings import LOG_FORMATS, NUMBERS, Settings, SettingsError, parse_forwarded_allow_ips

__all__ = [
    "CONFIG_ENV",
    "FILE_SETTINGS",
    "PATH_SETTINGS",
    "Config",
    "ConfigError",
    "load_config",
    "parse_config",
]

#: The environment variable naming the config file (``--config`` wins over it).
CONFIG_ENV = "SERVERMODE_CONFIG"

_TOP_KEYS = ("default_category", "categories", "routes", "serve")
_POLICY_KEYS = ("categories",)
_RULES_KEYS = ("default_category", "routes")

#: Settings whose value is a path: read from the config file's folder when relative.
PATH_SETTINGS = frozenset({"state", "rules", "admin_token_file", "read_token_file", "app_dir"})

#: Values a setting may take, when they are a fixed list.
_CHOICES: dict[str, tuple[str, ...]] = {
    "timeout_policy": tuple(policy.value for policy in TimeoutPolicy),
    "initial_mode": tuple(mode.value for mode in Mode),
    "log_level": LOG_LEVELS,
    "log_format": LOG_FORMATS,
}


def _file_settings() -> dict[str, type]:
    """The ``[serve]`` keys and the type of each: every setting but the tokens themselves,
    which a file may name (``admin_token_file``) but never hold: config files get shared.
    """
    hints = typing.get_type_hints(Settings)
    kinds: dict[str, type] = {}
    for spec in fields(Settings):
        if spec.name in ("admin_token", "read_token"):
            continue
        kind = hints[spec.name]
        kinds[spec.name] = next((k for k in typing.get_args(kind) if k is not type(None)), kind)
    kinds["admin_token_file"] = str
    kinds["read_token_file"] = str
    return kinds


#: Each key of ``[serve]`` -> the Python type of its value.
FILE_SETTINGS: Mapping[str, type] = _file_settings()

_TYPE_NAMES = {str: "a string", int: "a whole number", float: "a number", bool: "true or false"}


class ConfigError(SettingsError):
    """A config file servermode cannot use; ``str()`` names the file, the key, what was expected."""

    def __init__(self, path: str | Path, message: str) -> None:
        self.path = str(path)
        super().__init__(f"config {self.path}: {message}")


@dataclass(frozen=True, slots=True)
class Config:
    """What a config file declares; None (or absent settings) where it declares nothing."""

    path: Path
    policy: AdmissionPolicy | None = None
    rules: RouteRules | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)

    def effective_policy(self) -> AdmissionPolicy:
        return self.policy if self.policy is not None else CONTEXT_SERVICES

    def effective_rules(self) -> RouteRules:
        return self.rules if self.rules is not None else CONTEXT_SERVICES_RULES


def load_config(path: str | Path) -> Config:
    """Read and check the config file at ``path``."""
    path = Path(path)
    try:
        with path.open("rb") as file:
            data = tomllib.load(file)
    except OSError as exc:
        raise ConfigError(path, f"cannot be read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, f"expected TOML: {exc}") from None
    return parse_config(data, path)


def parse_config(data: Mapping[str, Any], path: str | Path) -> Config:
    """Check the mapping a config file holds; ``path`` names it in errors, and anchors paths."""
    path = Path(path)
    unknown = [key for key in data if key not in _TOP_KEYS]
    if unknown:
        raise ConfigError(path, f"{unknown[0]}: unknown key, expected {', '.join(_TOP_KEYS)}")
    if "categories" in data and "default_category" not in data:
        # The preset's rules name the preset's categories: they cannot go with others.
        raise ConfigError(
            path,
            "default_category: missing, expected the category of requests no route matches "
            "(a file that declares [categories] declares its default and routes too)",
        )
    try:
        policy = AdmissionPolicy.from_mapping(data) if "categories" in data else None
        rules = RouteRules.from_mapping(data) if any(k in data for k in _RULES_KEYS) else None
    except ValueError as exc:
        raise ConfigError(path, str(exc)) from None
    _check_categories(path, rules or CONTEXT_SERVICES_RULES, policy or CONTEXT_SERVICES)
    settings = _settings(path, data.get("serve", {}))
    return Config(path=path, policy=policy, rules=rules, settings=settings)


def _check_categories(path: Path, rules: RouteRules, policy: AdmissionPolicy) -> None:
    """Every category a route names (and the default) is one the policy declares."""
    known = ", ".join(policy.categories)
    named = [(f"routes[{n}].category", rule.category) for n, rule in enumerate(rules.rules, 1)]
    named.append(("default_category", rules.default))
    for key, category in named:
        if category not in policy:
            where = (
                "declared under [categories]"
                if policy is not CONTEXT_SERVICES
                else ("of the Context Services policy (declare your own under [categories])")
            )
            raise ConfigError(
                path, f"{key}: expected one of the categories {where}: {known}; not {category!r}"
            )


def _settings(path: Path, table: object) -> dict[str, Any]:
    if not isinstance(table, Mapping):
        raise ConfigError(path, f"serve: expected a table of settings, not {table!r}")
    values: dict[str, Any] = {}
    for key, value in table.items():
        kind = FILE_SETTINGS.get(key)
        if kind is None:
            hint = (
                f"; a file may name {key}_file, never hold the token"
                if key in ("admin_token", "read_token")
                else f", expected one of {', '.join(sorted(FILE_SETTINGS))}"
            )
            raise ConfigError(path, f"serve.{key}: unknown key{hint}")
        values[key] = _setting(path, key, kind, value)
    return values


def _setting(path: Path, key: str, kind: type, value: object) -> Any:
    # TOML has no bool-as-int confusion, but Python does: True is an int.
    fits = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value, fits = float(value), True
    if not fits:
        raise ConfigError(path, f"serve.{key}: expected {_TYPE_NAMES[kind]}, not {value!r}")
    choices = _CHOICES.get(key)
    if choices is not None and value not in choices:
        raise ConfigError(path, f"serve.{key}: expected one of {', '.join(choices)}, not {value!r}")
    number = NUMBERS.get(key)
    if number is not None and number.problem(typing.cast(float, value)) is not None:
        noun = "a whole number" if number.kind is int else "a number"
        raise ConfigError(path, f"serve.{key}: expected {noun} {number.describe()}, not {value!r}")
    if key == "forwarded_allow_ips":
        try:
            value = parse_forwarded_allow_ips(typing.cast(str, value))
        except ValueError as exc:
            raise ConfigError(path, f"serve.{key}: {exc}") from None
    if key in PATH_SETTINGS and isinstance(value, str) and value != MEMORY:
        value = str(path.parent / value) if not Path(value).is_absolute() else value
    return value
