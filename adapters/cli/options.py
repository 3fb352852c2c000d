"""The settings of ``servermode serve`` as click options: flag > environment > file > default.

Each setting is one click option with its ``SERVERMODE_*`` variable (``envvar``), shown in
``--help`` with its default and bounds (``show_envvar``, ``show_default``, ranges, choices).
``--config FILE`` (or ``SERVERMODE_CONFIG``) is read first, and its ``[serve]`` table becomes
click's ``default_map``: click itself then applies the precedence, and says where each value
came from (``Context.get_parameter_source``), which ``servermode config`` prints.

The tokens have no flag (flags show in the process list): they come from a file
(``--admin-token-file``, its variable, or the config file) or from ``SERVERMODE_ADMIN_TOKEN``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any, TypeVar

import click
from click.core import ParameterSource
from servermode.core import AdmissionPolicy, Mode, TimeoutPolicy

from .config import CONFIG_ENV, Config, ConfigError, load_config
from .logging import LOG_LEVELS
from .settings import (
    LOG_FORMATS,
    NUMBERS,
    Number,
    Settings,
    SettingsError,
    check_settings,
    env_name,
    parse_forwarded_allow_ips,
    read_token_file,
)

if TYPE_CHECKING:
    from ..http.classify import RouteRules

    _ParamType = click.ParamType[Any, Any]  # generic from click 8.2 on; a plain class before
else:
    _ParamType = click.ParamType

__all__ = ["Resolved", "resolve", "resolve_serve", "serve_options"]

F = TypeVar("F", bound=Callable[..., Any])
DEFAULTS = Settings()
_CONFIG_KEY = "servermode.config"
_ENVIRON_KEY = "servermode.environ"


# -- option types ------------------------------------------------------------------------------


class _BoundedInt(click.IntRange):
    """click's range, read by the setting's own :class:`Number` (its words, its bounds)."""

    def __init__(self, number: Number) -> None:
        super().__init__(int(number.low), int(number.high))
        self.number = number

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        return _bounded(self, self.number, value, param, ctx)


class _BoundedFloat(click.FloatRange):
    """As :class:`_BoundedInt`; also refuses ``nan``, which no range comparison catches."""

    def __init__(self, number: Number) -> None:
        super().__init__(number.low, number.high, min_open=number.low_open)
        self.number = number

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        return _bounded(self, self.number, value, param, ctx)


def _bounded(
    kind: _ParamType,
    number: Number,
    value: Any,
    param: click.Parameter | None,
    ctx: click.Context | None,
) -> Any:
    try:
        if isinstance(value, str):
            return number.parse(value)
        problem = number.problem(value)
        if problem is not None:
            raise ValueError(problem)
        return number.kind(value)
    except ValueError as exc:
        kind.fail(str(exc), param, ctx)


def _bounded_type(name: str) -> _ParamType:
    number = NUMBERS[name]
    return _BoundedInt(number) if number.kind is int else _BoundedFloat(number)


class _Addresses(_ParamType):
    """Proxy addresses for ``--forwarded-allow-ips``, read by :func:`parse_forwarded_allow_ips`."""

    name = "ips"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            return parse_forwarded_allow_ips(value) if isinstance(value, str) else value
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class _SettingOption(click.Option):
    """An option whose variable is read from the environment the command was given."""

    def resolve_envvar_value(self, ctx: click.Context) -> str | None:
        environ: Mapping[str, str] = ctx.meta.get(_ENVIRON_KEY, os.environ)
        for name in [self.envvar] if isinstance(self.envvar, str) else self.envvar or ():
            value = environ.get(name)
            if value:  # an empty variable is an unset one, as click reads them
                return value
        return None


# -- the table ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Setting:
    name: str  # the Settings field, the [serve] key, SERVERMODE_<NAME>
    help: str
    type: _ParamType | None = None
    metavar: str | None = None
    shown_default: str | None = None  # when the default is None, what it means
    is_flag: bool = False
    switch: bool = False  # an on/off pair, --name/--no-name, defaulting to the Settings field


_SETTINGS: tuple[_Setting, ...] = (
    _Setting("host", "Address to listen on."),
    _Setting("port", "Port to listen on.", _bounded_type("port")),
    _Setting(
        "app",
        "ASGI application to gate, as uvicorn names it.",
        metavar="MODULE:ATTR",
        shown_default="the built-in demo",
    ),
    _Setting("app_dir", "Folder where --app's module is looked for first.", metavar="DIR"),
    _Setting("state", "Where the mode is kept: ':memory:' or a SQLite file.", metavar="PATH"),
    _Setting(
        "drain_timeout",
        "Seconds a switch waits for running requests.",
        _bounded_type("drain_timeout"),
    ),
    _Setting(
        "timeout_policy",
        "When the drain times out: switch anyway (force) or stay (rollback).",
        click.Choice([p.value for p in TimeoutPolicy]),
    ),
    _Setting(
        "initial_mode",
        "Mode when nothing is kept yet.",
        click.Choice([m.value for m in Mode], case_sensitive=False),
    ),
    _Setting(
        "retry_after",
        "Retry-After (seconds) of requests a mode refuses.",
        _bounded_type("retry_after"),
    ),
    _Setting(
        "rules",
        "JSON route rules; replaces the config file's routes.",
        metavar="FILE",
        shown_default="the config file's, else Context Services",
    ),
    _Setting("demo_delay", "Seconds each demo request takes.", _bounded_type("demo_delay")),
    _Setting(
        "body_timeout",
        "Seconds a mode request body may take to arrive, else 408.",
        _bounded_type("body_timeout"),
    ),
    _Setting(
        "lame_duck",
        "Seconds a switch to maintenance fails readiness while still admitting requests, "
        "before it drains (0: off).",
        _bounded_type("lame_duck"),
    ),
    _Setting(
        "maintenance_page",
        "HTML template (string.Template) of the page refused browsers get.",
        metavar="FILE",
        shown_default="a built-in page",
    ),
    _Setting(
        "bypass_secret_file",
        f"File holding the bypass secret: the Servermode-Bypass header and the /server/bypass "
        f"link (or set {env_name('bypass_secret')}).",
        metavar="FILE",
        shown_default="none",
    ),
    _Setting(
        "bypass_allow",
        "Client networks (CIDRs, comma-separated) that pass a refusing mode.",
        metavar="CIDRS",
        shown_default="none",
    ),
    _Setting(
        "trusted_proxies",
        "Proxies (CIDRs) whose Forwarded / X-Forwarded-For the bypass allowlist believes.",
        metavar="CIDRS",
        shown_default="none",
    ),
    _Setting(
        "webhooks",
        "URLs (comma-separated) to POST every transition record to, signed.",
        metavar="URLS",
        shown_default="none",
    ),
    _Setting(
        "webhook_secret_file",
        f"File holding the webhooks' HMAC-SHA256 key (or set {env_name('webhook_secret')}).",
        metavar="FILE",
        shown_default="none",
    ),
    _Setting(
        "admin_token_file",
        f"File holding the admin bearer token (or set {env_name('admin_token')}).",
        metavar="FILE",
        shown_default="none",
    ),
    _Setting(
        "read_token_file",
        f"File holding the read token (or set {env_name('read_token')}).",
        metavar="FILE",
        shown_default="none",
    ),
    _Setting(
        "insecure",
        "Allow a non-loopback address without an admin token.",
        is_flag=True,
    ),
    _Setting(
        "forwarded_allow_ips",
        "Proxies whose X-Forwarded-For and X-Forwarded-Proto are believed: addresses or "
        "networks separated by commas, or *.",
        _Addresses(),
        metavar="IPS",
        shown_default="none: the client is the connection's peer",
    ),
    _Setting(
        "workers",
        "Worker processes: 1 without --fleet (the gate lives in the process); with --fleet "
        "each worker is an instance of the fleet.",
        _bounded_type("workers"),
    ),
    _Setting(
        "fleet",
        "Share the mode with a fleet of instances through this Redis.",
        metavar="redis://HOST:PORT/DB",
        shown_default="none: this process alone",
    ),
    _Setting("fleet_prefix", "Key prefix of the fleet in Redis (several fleets, one Redis)."),
    _Setting(
        "instance_id",
        "This instance's name in the fleet.",
        metavar="NAME",
        shown_default="host:pid",
    ),
    _Setting(
        "fleet_period",
        "Seconds between an instance's reads of the fleet state.",
        _bounded_type("fleet_period"),
    ),
    _Setting(
        "fleet_heartbeat_ttl",
        "Seconds a silent instance stays in the fleet's barrier.",
        _bounded_type("fleet_heartbeat_ttl"),
    ),
    _Setting("log_level", "Log level.", click.Choice(LOG_LEVELS, case_sensitive=False)),
    _Setting(
        "log_format",
        "auto: console on a terminal, JSON lines otherwise.",
        click.Choice(LOG_FORMATS),
    ),
    _Setting(
        "access_log",
        "One log line per HTTP answer, refusals included (the audit is written regardless).",
        switch=True,
    ),
)

_TOKEN_FILES = {
    "admin_token": "admin_token_file",
    "read_token": "read_token_file",
    "bypass_secret": "bypass_secret_file",
    "webhook_secret": "webhook_secret_file",
}


def _option(setting: _Setting) -> Callable[[F], F]:
    default = False if setting.is_flag else getattr(DEFAULTS, setting.name, None)
    shown: bool | str = setting.shown_default or True
    if setting.is_flag:
        shown = False
    flag = "--" + setting.name.replace("_", "-")
    if setting.switch:
        flag += "/--no-" + setting.name.replace("_", "-")
    return click.option(
        flag,
        setting.name,
        cls=_SettingOption,
        type=setting.type,
        metavar=setting.metavar,
        is_flag=setting.is_flag or setting.switch,
        default=default,
        show_default=shown,
        envvar=env_name(setting.name),
        show_envvar=True,
        help=setting.help,
    )


def _read_config(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Read the config file first (an eager option): its settings become the defaults."""
    if not value:
        return None
    try:
        config = load_config(value)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    ctx.meta[_CONFIG_KEY] = config
    ctx.default_map = {**(ctx.default_map or {}), **config.settings}
    return value


def serve_options(command: F) -> F:
    """Give ``command`` every setting of ``serve`` as an option, and ``--config``."""
    for setting in reversed(_SETTINGS):
        command = _option(setting)(command)
    return click.option(
        "--config",
        "config",
        cls=_SettingOption,
        metavar="FILE",
        envvar=CONFIG_ENV,
        show_envvar=True,
        is_eager=True,
        expose_value=True,
        callback=_read_config,
        help="servermode.toml: categories, route rules and settings (flags and variables win).",
    )(command)


# -- what the options resolve to ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Resolved:
    """The settings ``serve`` runs with, where each came from, and the config file read."""

    settings: Settings
    sources: Mapping[str, str]  # setting -> "flag --port", "env SERVERMODE_PORT", ...
    config: Config | None = None

    @property
    def policy(self) -> AdmissionPolicy:
        from servermode.core import CONTEXT_SERVICES

        return self.config.effective_policy() if self.config is not None else CONTEXT_SERVICES

    @property
    def policy_source(self) -> str:
        if self.config is not None and self.config.policy is not None:
            return f"config {self.config.path}"
        return "built in: Context Services"

    def rules(self) -> RouteRules:
        """The route rules: --rules FILE, else the config file's, else Context Services."""
        from ..bootstrap import load_rules
        from ..http.classify import CONTEXT_SERVICES_RULES

        if self.settings.rules:
            return load_rules(self.settings.rules)
        return self.config.effective_rules() if self.config is not None else CONTEXT_SERVICES_RULES

    @property
    def rules_source(self) -> str:
        if self.settings.rules:
            return f"rules file {self.settings.rules} ({self.sources['rules']})"
        if self.config is not None and self.config.rules is not None:
            return f"config {self.config.path}"
        return "built in: Context Services"


def resolve(ctx: click.Context, values: Mapping[str, Any]) -> Resolved:
    """The settings of a parsed command with :func:`serve_options`; SettingsError if unusable."""
    config: Config | None = ctx.meta.get(_CONFIG_KEY)
    environ: Mapping[str, str] = ctx.meta.get(_ENVIRON_KEY, os.environ)
    sources = {name: _source(ctx, name, config) for name in values if name != "config"}
    if config is not None:
        sources["config"] = _source(ctx, "config", None)
    tokens: dict[str, Any] = {}
    for token, file_setting in _TOKEN_FILES.items():
        tokens[token], sources[token] = _token(token, values[file_setting], sources, environ)
    known = {spec.name for spec in fields(Settings)}
    chosen = {name: value for name, value in values.items() if name in known}
    settings = check_settings(replace(Settings(), **chosen, **tokens))
    return Resolved(settings=settings, sources=sources, config=config)


def resolve_serve(args: Sequence[str] = (), environ: Mapping[str, str] | None = None) -> Resolved:
    """The settings ``servermode serve ARGS`` would run with, in ``environ`` (default: this
    process's): for tests and tools. Any problem is a SettingsError saying what and where."""

    @click.command()
    @serve_options
    def probe(**values: Any) -> Resolved:
        return resolve(click.get_current_context(), values)

    ctx = probe.context_class(probe, info_name="serve")
    ctx.meta[_ENVIRON_KEY] = os.environ if environ is None else environ
    try:
        with ctx.scope(cleanup=False):
            probe.parse_args(ctx, list(args))
    except click.ClickException as exc:
        raise SettingsError(exc.format_message()) from None
    with ctx:
        return resolve(ctx, ctx.params)


def _source(ctx: click.Context, name: str, config: Config | None) -> str:
    source = ctx.get_parameter_source(name)
    flag = "--" + name.replace("_", "-")
    if source is ParameterSource.COMMANDLINE:
        return f"flag {flag}"
    if source is ParameterSource.ENVIRONMENT:
        return "env " + (CONFIG_ENV if name == "config" else env_name(name))
    if source is ParameterSource.DEFAULT_MAP and config is not None:
        return f"config {config.path}"
    return "default"


def _token(
    token: str, path: str | None, sources: dict[str, str], environ: Mapping[str, str]
) -> tuple[str | None, str]:
    """The token and where it came from: a file named by a flag or variable, then the token's
    own variable, then a file named by the config file (flag > environment > file)."""
    file_source = sources[_TOKEN_FILES[token]]
    variable = env_name(token)
    if path and not file_source.startswith("config"):
        return read_token_file(path), f"file {path} ({file_source})"
    if variable in environ:
        return environ[variable], f"env {variable}"
    if path:
        return read_token_file(path), f"file {path} ({file_source})"
    return None, "default"
