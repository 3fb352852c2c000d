"""The service's settings, their bounds and the checks across them.

Where each value comes from (flag, ``SERVERMODE_*`` variable, config file, default) is
:mod:`.options`, with click's own layering; the tokens come only from the environment or from
files (``--admin-token-file``), never from a flag, so that they do not show in the process list.

Every number has bounds (:data:`NUMBERS`), checked when it is read, from a flag or from the
environment alike: a value that parses but cannot be served (``inf``, ``nan``, a drain timeout
of 10^12 seconds) is refused at start with one line that names it, never at the first switch.
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from servermode.core import MAX_DRAIN_TIMEOUT, InvalidMode, TimeoutPolicy, parse_mode

from ..store.factory import DEFAULT_STATE
from ..store.redis import check_fleet_url
from .logging import LOG_LEVELS

__all__ = [
    "ENV_PREFIX",
    "FLEET_ISSUE",
    "LOG_FORMATS",
    "MAX_DEMO_DELAY",
    "MAX_DRAIN_TIMEOUT",
    "NUMBERS",
    "Number",
    "Settings",
    "SettingsError",
    "check_exposure",
    "check_settings",
    "env_name",
    "is_loopback",
    "parse_forwarded_allow_ips",
    "read_token_file",
    "settings_environment",
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
    app_dir: str = "."  # where --app's module is looked for first (as uvicorn's --app-dir)
    state: str = DEFAULT_STATE  # ":memory:" or the path of a SQLite file
    drain_timeout: float = 60.0
    timeout_policy: str = TimeoutPolicy.FORCE.value
    initial_mode: str = "production"
    retry_after: int = 60  # Retry-After (s) of requests a steady mode refuses
    lame_duck: float = 0.0  # seconds readiness fails before a switch to maintenance drains
    rules: str | None = None  # path of a JSON file of route rules; None: Context Services
    demo_delay: float = 1.0
    body_timeout: float = 10.0  # seconds a mode request body may take to arrive (else 408)
    maintenance_page: str | None = None  # an HTML template for refused browsers; None: default
    bypass_allow: str | None = None  # CIDRs whose clients pass a refusing mode, comma-separated
    trusted_proxies: str | None = None  # CIDRs whose forwarded headers the bypass believes
    webhooks: str | None = None  # URLs told every transition record, comma-separated
    insecure: bool = False
    log_level: str = "info"
    log_format: str = "auto"
    # One line per HTTP answer; the audit trail is written whatever this and the level say.
    access_log: bool = True
    # Comma-separated addresses or networks whose X-Forwarded-For / -Proto headers are
    # believed (the proxies in front); None: none, the client is the peer of the connection.
    forwarded_allow_ips: str | None = None
    workers: int = 1  # only 1: the gate lives in the process (see FLEET_ISSUE)
    fleet: str | None = None  # redis://HOST:PORT/DB of the fleet's Redis; None: one process
    fleet_prefix: str = "servermode"  # key prefix, so that several fleets share one Redis
    instance_id: str | None = None  # this instance's name in the fleet; None: host:pid
    fleet_period: float = 0.5  # seconds between an instance's reads of the fleet state
    fleet_heartbeat_ttl: float = 5.0  # seconds a silent instance stays in the barrier
    admin_token: str | None = field(default=None, repr=False)
    read_token: str | None = field(default=None, repr=False)
    bypass_secret: str | None = field(default=None, repr=False)
    webhook_secret: str | None = field(default=None, repr=False)


#: Where several worker processes on one mode will be possible (fleet mode).
FLEET_ISSUE = "issue 11, fleet mode"


@dataclass(frozen=True, slots=True)
class Number:
    """The bounds of a numeric setting: ``low <= value <= high`` (``low < value`` if open)."""

    label: str  # how the message names it
    kind: type[int] | type[float]
    low: float
    high: float
    low_open: bool = False
    unit: str = "seconds"

    def parse(self, text: str) -> int | float:
        """The value ``text`` spells, within bounds; ValueError (saying why) otherwise."""
        try:
            value = self.kind(text.strip())
        except ValueError:
            noun = "a whole number" if self.kind is int else "a number"
            raise ValueError(f"{self.label} must be {noun}, not {text!r}") from None
        problem = self.problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    def problem(self, value: float) -> str | None:
        """What is wrong with ``value``, or None when it is within bounds."""
        if isinstance(value, float) and not math.isfinite(value):
            ok = False
        else:
            ok = (self.low < value if self.low_open else self.low <= value) and value <= self.high
        if ok:
            return None
        return f"{self.label} must be {self.describe()}, not {value:g}"

    def describe(self) -> str:
        if self.low == self.high:
            return f"{self.low:g}"
        low = f"more than {self.low:g}" if self.low_open else f"between {self.low:g}"
        joiner = " and at most" if self.low_open else " and"
        unit = f" {self.unit}" if self.unit else ""
        return f"{low}{joiner} {self.high:g}{unit}"


#: The demo's longest delay (``http.demo.MAX_DELAY``, which a test compares): a copy, so that
#: the CLI's client commands start without importing the web stack.
MAX_DEMO_DELAY = 60.0

#: Every numeric setting and its bounds.
NUMBERS: dict[str, Number] = {
    "port": Number("port", int, 0, 65535, unit=""),
    "drain_timeout": Number("drain timeout", float, 0, MAX_DRAIN_TIMEOUT),
    # Retry-After is a promise to clients: beyond a week it is a mistake, not a plan.
    "retry_after": Number("retry-after", int, 1, 604_800),
    # Load balancers notice a failing probe within seconds: an hour is plenty.
    "lame_duck": Number("lame duck", float, 0, 3600),
    "body_timeout": Number("body timeout", float, 0, 3600, low_open=True),
    "demo_delay": Number("demo delay", float, 0, MAX_DEMO_DELAY),
    # Read as a number here; anything but 1 is then refused with workers_refusal().
    "workers": Number("workers", int, 1, 1024, unit=""),
    # How often an instance reads the fleet state, and how long a silent one stays counted.
    "fleet_period": Number("fleet period", float, 0.01, 60),
    "fleet_heartbeat_ttl": Number("fleet heartbeat TTL", float, 0.02, 3600),
}


def env_name(name: str) -> str:
    return ENV_PREFIX + name.upper()


def parse_forwarded_allow_ips(text: str) -> str | None:
    """``*``, or addresses and networks separated by commas; None when empty (trust none).

    uvicorn takes an entry it cannot read as an IP for a literal host name, which silently
    trusts nothing (or something else): such an entry is an error here.
    """
    entries = [entry.strip() for entry in text.split(",") if entry.strip()]
    if not entries:
        return None
    if entries == ["*"]:
        return "*"
    for entry in entries:
        try:
            if "/" in entry:
                ipaddress.ip_network(entry)
            else:
                ipaddress.ip_address(entry)
        except ValueError:
            raise ValueError(
                f"{entry!r} is not an IP address or network (write "
                "addresses like 10.0.0.5 or networks like 10.0.0.0/8, separated by commas, "
                "or * for any)"
            ) from None
    return ",".join(entries)


def read_token_file(path: str) -> str:
    """The token kept in ``path`` (surrounding whitespace removed); it must not be empty."""
    try:
        token = Path(path).read_text().strip()
    except OSError as exc:
        raise SettingsError(f"cannot read token file {path}: {exc.strerror}") from exc
    if not token:
        raise SettingsError(f"token file {path} is empty")
    return token


def check_settings(settings: Settings) -> Settings:
    """``settings`` with its values normalised; SettingsError naming every one that cannot be
    served (the bounds of :data:`NUMBERS` included, for settings built in code)."""
    problems = []
    for name, number in NUMBERS.items():
        problem = number.problem(getattr(settings, name))
        if problem is not None:
            problems.append(problem)
    if (
        settings.workers != 1
        and settings.fleet is None
        and NUMBERS["workers"].problem(settings.workers) is None
    ):
        problems.append(workers_refusal(settings.workers))
    if settings.forwarded_allow_ips is not None:
        try:
            allowed = parse_forwarded_allow_ips(settings.forwarded_allow_ips)
            settings = replace(settings, forwarded_allow_ips=allowed)
        except ValueError as exc:
            problems.append(f"forwarded-allow-ips: {exc}")
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
    if (
        NUMBERS["fleet_period"].problem(settings.fleet_period) is None
        and settings.fleet_heartbeat_ttl < 2 * settings.fleet_period
    ):
        problems.append(
            f"fleet heartbeat TTL must be at least twice the fleet period "
            f"({settings.fleet_period:g} seconds), not {settings.fleet_heartbeat_ttl:g}"
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
    for name in ("admin_token", "read_token", "bypass_secret", "webhook_secret"):
        token = getattr(settings, name)
        if token is not None and not token.strip():
            problems.append(f"{env_name(name)} is set but empty")
    if problems:
        raise SettingsError("; ".join(problems))
    return settings


def workers_refusal(workers: object) -> str:
    """Why ``workers`` worker processes are refused."""
    return (
        f"workers must be 1, not {workers}: each worker process would keep its own gate and "
        "admit, drain and switch on its own over one state file; in fleet mode "
        "(--fleet redis://HOST:PORT/DB) the workers share one mode, each an instance"
    )


def settings_environment(settings: Settings) -> dict[str, str]:
    """``SERVERMODE_*`` variables that :func:`load_settings` reads back as ``settings``.

    For worker processes, which rebuild the service from their environment.
    """
    defaults = Settings()
    environment = {}
    for spec in fields(Settings):
        value = getattr(settings, spec.name)
        if value is None or value == getattr(defaults, spec.name):
            continue
        environment[env_name(spec.name)] = (
            str(value).lower() if isinstance(value, bool) else str(value)
        )
    return environment


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
