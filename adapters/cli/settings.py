"""The service's settings: defaults, then ``SERVERMODE_*`` environment variables, then flags.

Every field of :class:`Settings` has the environment variable ``SERVERMODE_<FIELD>``; the
tokens come only from the environment or from files (``--admin-token-file``), never from a
flag, so that they do not show in the process list.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from servermode.core import InvalidMode, TimeoutPolicy, parse_mode

from ..store.factory import DEFAULT_STATE
from ..store.redis import check_fleet_url
from .logging import LOG_LEVELS

__all__ = [
    "ENV_PREFIX",
    "LOG_FORMATS",
    "Settings",
    "SettingsError",
    "check_exposure",
    "env_name",
    "is_loopback",
    "load_settings",
    "read_token_file",
]

ENV_PREFIX = "SERVERMODE_"
LOG_FORMATS = ("auto", "console", "json")


class SettingsError(ValueError):
    """A setting with a value the service cannot run with; the message says which and why."""


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    app: str | None = None  # "module:attr" of the ASGI app to gate; None: the built-in demo
    state: str = DEFAULT_STATE  # ":memory:" or the path of a SQLite file
    drain_timeout: float = 60.0
    timeout_policy: str = TimeoutPolicy.FORCE.value
    initial_mode: str = "production"
    retry_after: int = 60  # Retry-After (s) of requests a steady mode refuses
    rules: str | None = None  # path of a JSON file of route rules; None: Context Services
    demo_delay: float = 1.0
    body_timeout: float = 10.0  # seconds a mode request body may take to arrive (else 408)
    insecure: bool = False
    log_level: str = "info"
    log_format: str = "auto"
    fleet: str | None = None  # redis://HOST:PORT/DB of the fleet's Redis; None: one process
    fleet_prefix: str = "servermode"  # key prefix, so that several fleets share one Redis
    instance_id: str | None = None  # this instance's name in the fleet; None: host:pid
    fleet_period: float = 0.5  # seconds between an instance's reads of the fleet state
    fleet_heartbeat_ttl: float = 5.0  # seconds a silent instance stays in the barrier
    admin_token: str | None = field(default=None, repr=False)
    read_token: str | None = field(default=None, repr=False)


def env_name(name: str) -> str:
    return ENV_PREFIX + name.upper()


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"expected true or false, not {text!r}")


_PARSERS: dict[str, Callable[[str], Any]] = {
    "port": int,
    "drain_timeout": float,
    "retry_after": int,
    "demo_delay": float,
    "body_timeout": float,
    "fleet_period": float,
    "fleet_heartbeat_ttl": float,
    "insecure": _parse_bool,
}


def read_token_file(path: str) -> str:
    """The token kept in ``path`` (surrounding whitespace removed); it must not be empty."""
    try:
        token = Path(path).read_text().strip()
    except OSError as exc:
        raise SettingsError(f"cannot read token file {path}: {exc.strerror}") from exc
    if not token:
        raise SettingsError(f"token file {path} is empty")
    return token


def load_settings(
    environ: Mapping[str, str],
    *,
    admin_token_file: str | None = None,
    read_token_file_path: str | None = None,
    **flags: Any,
) -> Settings:
    """Defaults, overridden by the environment, overridden by the flags that are not None."""
    values: dict[str, Any] = {}
    for spec in fields(Settings):
        raw = environ.get(env_name(spec.name))
        if raw is None:
            continue
        parse = _PARSERS.get(spec.name, str)
        try:
            values[spec.name] = parse(raw)
        except ValueError as exc:
            raise SettingsError(f"{env_name(spec.name)}: {exc}") from None
    for token, path in (
        ("admin_token", admin_token_file or environ.get(env_name("admin_token_file"))),
        ("read_token", read_token_file_path or environ.get(env_name("read_token_file"))),
    ):
        if path:
            values[token] = read_token_file(path)
    values.update({name: value for name, value in flags.items() if value is not None})
    unknown = set(values) - {spec.name for spec in fields(Settings)}
    if unknown:
        raise TypeError(f"unknown settings: {sorted(unknown)}")
    return _validated(replace(Settings(), **values))


def _validated(settings: Settings) -> Settings:
    problems = []
    if not 0 <= settings.port <= 65535:
        problems.append(f"port must be between 0 and 65535, not {settings.port}")
    if settings.drain_timeout < 0:
        problems.append(f"drain timeout must be >= 0 seconds, not {settings.drain_timeout:g}")
    if settings.retry_after < 1:
        problems.append(f"retry-after must be >= 1 second, not {settings.retry_after}")
    if not settings.body_timeout > 0:
        problems.append(f"body timeout must be > 0 seconds, not {settings.body_timeout:g}")
    if settings.demo_delay < 0:
        problems.append(f"demo delay must be >= 0 seconds, not {settings.demo_delay:g}")
    if settings.timeout_policy not in {p.value for p in TimeoutPolicy}:
        problems.append(
            f"timeout policy must be force or rollback, not {settings.timeout_policy!r}"
        )
    try:
        settings = replace(settings, initial_mode=parse_mode(settings.initial_mode).value)
    except InvalidMode as exc:
        problems.append(f"initial mode must be production or maintenance, not {exc.value!r}")
    if settings.fleet is not None:
        try:
            check_fleet_url(settings.fleet)
        except ValueError as exc:
            problems.append(str(exc))
    if not 0.01 <= settings.fleet_period <= 60:
        problems.append(f"fleet period must be 0.01 to 60 seconds, not {settings.fleet_period:g}")
    if not 2 * settings.fleet_period <= settings.fleet_heartbeat_ttl <= 3600:
        problems.append(
            f"fleet heartbeat TTL must be at least twice the period and at most 3600 seconds, "
            f"not {settings.fleet_heartbeat_ttl:g}"
        )
    if not settings.fleet_prefix or not settings.fleet_prefix.isprintable():
        problems.append(f"fleet prefix must be printable, not {settings.fleet_prefix!r}")
    if settings.instance_id is not None and (
        not settings.instance_id.strip() or not settings.instance_id.isprintable()
    ):
        problems.append(f"instance id must be printable, not {settings.instance_id!r}")
    if settings.log_level.lower() not in LOG_LEVELS:
        problems.append(
            f"log level must be one of {', '.join(LOG_LEVELS)}, not {settings.log_level!r}"
        )
    if settings.log_format not in LOG_FORMATS:
        problems.append(f"log format must be one of {', '.join(LOG_FORMATS)}")
    for name in ("admin_token", "read_token"):
        token = getattr(settings, name)
        if token is not None and not token.strip():
            problems.append(f"{env_name(name)} is set but empty")
    if problems:
        raise SettingsError("; ".join(problems))
    return settings


def is_loopback(host: str) -> bool:
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def check_exposure(settings: Settings) -> None:
    """Refuse to serve the mode switch, unprotected, beyond this machine."""
    if is_loopback(settings.host) or settings.admin_token is not None or settings.insecure:
        return
    raise SettingsError(
        f"refusing to listen on {settings.host}, which is not a loopback address, without an "
        f"admin token: anyone who can reach it could switch the server's mode. Set "
        f"{env_name('admin_token')} or --admin-token-file, or pass --insecure to serve it "
        f"unprotected anyway."
    )
