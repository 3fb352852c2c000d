"""``servermode``: serve the gated application, or talk to a running service.

servermode serve [--host --port --app module:attr --state ... --drain-timeout ...]
servermode status | set MODE [--wait] | history | diagram [--format mermaid|dot|svg]
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import threading
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import click
from servermode.core import StoreError, TimeoutPolicy

from ..http.routes import MODE_PATH, STATUS_PATH, TRANSITIONS_PATH
from .client import ServiceClient, ServiceError
from .settings import (
    LOG_FORMATS,
    NUMBERS,
    Settings,
    SettingsError,
    check_exposure,
    env_name,
    load_settings,
    parse_forwarded_allow_ips,
    read_token_file,
    settings_environment,
)

__all__ = ["main"]

F = TypeVar("F", bound=Callable[..., Any])
DEFAULTS = Settings()
#: Seconds a graceful stop waits beyond the drain timeout before it cancels requests.
GRACE_MARGIN = 1


def _env(name: str) -> str:
    return f"(env {env_name(name)})"


if TYPE_CHECKING:  # generic from click 8.2 on; a plain class before
    _ParamType = click.ParamType[Any, Any]
else:
    _ParamType = click.ParamType


class Parsed(_ParamType):
    """A flag read by the same function as its environment variable (bounds included)."""

    def __init__(self, name: str, parse: Callable[[str], Any]) -> None:
        self.name = name
        self._parse = parse

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return self._parse(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def _number(name: str) -> Parsed:
    number = NUMBERS[name]
    return Parsed("integer" if number.kind is int else "float", number.parse)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Put a server in production or maintenance mode and switch between them safely."""


# -- serve -----------------------------------------------------------------------------------


@main.command()
@click.option("--host", help=f"Address to listen on [{DEFAULTS.host}] {_env('host')}.")
@click.option("--port", type=_number("port"), help=f"Port [{DEFAULTS.port}] {_env('port')}.")
@click.option(
    "--app",
    metavar="MODULE:ATTR",
    help=f"ASGI application to gate [the built-in demo] {_env('app')}.",
)
@click.option(
    "--state",
    metavar="PATH",
    help=f"Where the mode is kept: ':memory:' or a SQLite file [{DEFAULTS.state}] {_env('state')}.",
)
@click.option(
    "--drain-timeout",
    type=_number("drain_timeout"),
    help=f"Seconds a switch waits for running requests [{DEFAULTS.drain_timeout:g}] "
    f"{_env('drain_timeout')}.",
)
@click.option(
    "--timeout-policy",
    type=click.Choice([p.value for p in TimeoutPolicy]),
    help=f"When the drain times out: switch anyway or stay [{DEFAULTS.timeout_policy}] "
    f"{_env('timeout_policy')}.",
)
@click.option(
    "--initial-mode",
    type=click.Choice(["production", "maintenance"], case_sensitive=False),
    help=f"Mode when nothing is kept yet [{DEFAULTS.initial_mode}] {_env('initial_mode')}.",
)
@click.option(
    "--retry-after",
    type=_number("retry_after"),
    help=f"Retry-After (s) for requests a mode refuses [{DEFAULTS.retry_after}] "
    f"{_env('retry_after')}.",
)
@click.option(
    "--rules",
    metavar="FILE",
    help=f"JSON route rules [the Context Services preset] {_env('rules')}.",
)
@click.option(
    "--demo-delay",
    type=_number("demo_delay"),
    help=f"Seconds each demo request takes [{DEFAULTS.demo_delay:g}] {_env('demo_delay')}.",
)
@click.option(
    "--body-timeout",
    type=_number("body_timeout"),
    help=f"Seconds a mode request body may take to arrive, else 408 "
    f"[{DEFAULTS.body_timeout:g}] {_env('body_timeout')}.",
)
@click.option(
    "--admin-token-file",
    metavar="FILE",
    help=f"File holding the admin bearer token {_env('admin_token_file')}; "
    f"or set {env_name('admin_token')}.",
)
@click.option(
    "--read-token-file",
    metavar="FILE",
    help=f"File holding the status read token {_env('read_token_file')}; "
    f"or set {env_name('read_token')}.",
)
@click.option(
    "--insecure",
    is_flag=True,
    help=f"Allow a non-loopback address without an admin token {_env('insecure')}.",
)
@click.option(
    "--fleet",
    metavar="redis://HOST:PORT/DB",
    help=f"Share the mode with a fleet of instances through this Redis {_env('fleet')}.",
)
@click.option(
    "--fleet-prefix",
    metavar="PREFIX",
    help=f"Key prefix of the fleet in Redis [{DEFAULTS.fleet_prefix}] {_env('fleet_prefix')}.",
)
@click.option(
    "--instance-id",
    metavar="NAME",
    help=f"This instance's name in the fleet [host:pid] {_env('instance_id')}.",
)
@click.option(
    "--forwarded-allow-ips",
    metavar="IPS",
    type=Parsed("ips", parse_forwarded_allow_ips),
    help="Proxies whose X-Forwarded-For and X-Forwarded-Proto are believed: addresses or "
    "networks separated by commas, or * [none: the client is the connection's peer] "
    f"{_env('forwarded_allow_ips')}.",
)
@click.option(
    "--workers",
    type=_number("workers"),
    help=f"Worker processes: 1 without --fleet (the gate lives in the process); with "
    f"--fleet each worker is an instance of the fleet [{DEFAULTS.workers}] {_env('workers')}.",
)
@click.option("--log-level", help=f"[{DEFAULTS.log_level}] {_env('log_level')}.")
@click.option(
    "--log-format",
    type=click.Choice(LOG_FORMATS),
    help=f"auto: console on a terminal, JSON otherwise {_env('log_format')}.",
)
def serve(
    admin_token_file: str | None, read_token_file: str | None, insecure: bool, **flags: Any
) -> None:
    """Serve the admin routes and the gated application with uvicorn."""
    import structlog

    from ..bootstrap import build_service
    from ..http.events import run_server
    from .logging import configure_logging

    try:
        settings = load_settings(
            os.environ,
            admin_token_file=admin_token_file,
            read_token_file_path=read_token_file,
            insecure=True if insecure else None,
            **flags,
        )
        check_exposure(settings)
        configure_logging(settings.log_level, settings.log_format)
        if settings.workers > 1:  # with --fleet only (settings refuse it otherwise)
            _serve_workers(settings)
            return
        # Opens the state file and takes its lock: a second process on it stops here.
        service = build_service(settings)
    except (SettingsError, StoreError) as exc:
        raise click.ClickException(str(exc)) from None
    structlog.get_logger("servermode").info(
        "servermode_serving",
        url=f"http://{settings.host}:{settings.port}",
        app=settings.app or "demo",
        state=settings.state,
        fleet=service.instance,
        drain_timeout=settings.drain_timeout,
        timeout_policy=settings.timeout_policy,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        admin_token=settings.admin_token is not None,
        read_token=settings.read_token is not None,
    )
    run_server(  # uvicorn.run, which also ends the event streams when a stop begins
        service.app,
        service.monitor.close,
        host=settings.host,
        port=settings.port,
        log_config=None,
        log_level=settings.log_level.lower(),
        lifespan="on",
        # wsproto, named: uvicorn's choice with `websockets` installed logs an error for
        # every handshake the gate refuses with an HTTP answer (the 503 of a refused mode).
        ws="wsproto",
        server_header=False,
        # One process: uvicorn would otherwise read WEB_CONCURRENCY (see workers_refusal).
        workers=1,
        # X-Forwarded-For replaces the client (audited, logged) only from listed proxies:
        # uvicorn trusts 127.0.0.1 by default, so any local process could forge the client.
        proxy_headers=settings.forwarded_allow_ips is not None,
        forwarded_allow_ips=settings.forwarded_allow_ips or "",
        # A stop (SIGTERM, Ctrl-C) gives running requests as long as a drain would, plus a
        # moment to answer a switch that drained, then cancels them: a hung request must not
        # keep the process alive forever (uvicorn waits without a bound by default).
        timeout_graceful_shutdown=math.ceil(settings.drain_timeout) + GRACE_MARGIN,
    )


def _serve_workers(settings: Settings) -> None:
    """``--workers N --fleet``: N uvicorn worker processes, each an instance of the fleet.

    The workers rebuild the service from the environment (``bootstrap.worker_app``), so the
    settings go there first, tokens included (the environment is the tokens' channel anyway).
    """
    import structlog
    import uvicorn

    os.environ.update(settings_environment(settings))
    structlog.get_logger("servermode").info(
        "servermode_serving",
        url=f"http://{settings.host}:{settings.port}",
        workers=settings.workers,
        fleet_prefix=settings.fleet_prefix,
    )
    uvicorn.run(
        "servermode.adapters.bootstrap:worker_app",
        factory=True,
        workers=settings.workers,
        host=settings.host,
        port=settings.port,
        log_config=None,
        log_level=settings.log_level.lower(),
        lifespan="on",
        ws="wsproto",
        server_header=False,
        proxy_headers=settings.forwarded_allow_ips is not None,
        forwarded_allow_ips=settings.forwarded_allow_ips or "",
        timeout_graceful_shutdown=math.ceil(settings.drain_timeout) + GRACE_MARGIN,
    )


# -- talking to a running service ------------------------------------------------------------


def _client_options(command: F) -> F:
    port = os.environ.get(env_name("port"), str(DEFAULTS.port))
    command = click.option(
        "--url",
        envvar=env_name("url"),
        default=f"http://127.0.0.1:{port}",
        show_default=True,
        help=f"The service {_env('url')}.",
    )(command)
    command = click.option(
        "--token-file",
        metavar="FILE",
        envvar=env_name("token_file"),
        help=f"File holding the bearer token {_env('token_file')}; or set "
        f"{env_name('token')} (else {env_name('admin_token')} is used).",
    )(command)
    return command


def _client(url: str, token_file: str | None, timeout: float = 10.0) -> ServiceClient:
    try:
        token = read_token_file(token_file) if token_file else None
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None
    if token is None:
        token = os.environ.get(env_name("token")) or os.environ.get(env_name("admin_token"))
    return ServiceClient(url, token or None, timeout)


def _fail(error: ServiceError) -> click.ClickException:
    return click.ClickException(str(error))


@main.command()
@_client_options
@click.option("--json", "as_json", is_flag=True, help="Print the status document as JSON.")
def status(url: str, token_file: str | None, as_json: bool) -> None:
    """Print the status of a running service."""
    try:
        document = _client(url, token_file).get(STATUS_PATH)
    except ServiceError as exc:
        raise _fail(exc) from None
    if as_json:
        click.echo(json.dumps(document, indent=2))
        return
    fleet = document.pop("fleet", None)
    for key, value in document.items():
        if isinstance(value, dict):
            value = " ".join(f"{k}={v}" for k, v in value.items()) or "-"
        click.echo(f"{key:<20} {'-' if value is None else value}")
    if isinstance(fleet, dict):
        click.echo("")
        click.echo(format_fleet(fleet))


def format_fleet(fleet: Mapping[str, Any]) -> str:
    """The fleet view of a status document: a line about the fleet, then one per instance."""
    lines = [
        f"fleet: epoch {fleet.get('epoch')}, {fleet.get('state')}, Redis {fleet.get('engine')}"
        + (f" ({fleet['engine_error']})" if fleet.get("engine_error") else "")
        + (
            f"; not drained: {', '.join(fleet['not_drained']) or '-'}"
            if "not_drained" in fleet
            else ""
        )
    ]
    rows = [["INSTANCE", "EPOCH", "STATE", "IN FLIGHT", "SEEN"]]
    for instance in fleet.get("instances", []):
        busy = " ".join(f"{k}={v}" for k, v in instance.get("in_flight", {}).items() if v)
        mark = " *" if instance.get("instance") == fleet.get("instance") else ""
        rows.append(
            [
                f"{instance.get('instance')}{mark}",
                str(instance.get("epoch")),
                str(instance.get("state")),
                busy or "-",
                str(instance.get("seen") or "-"),
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines += [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    return "\n".join(lines)


@main.command(name="set")
@_client_options
@click.argument("mode", type=click.Choice(["production", "maintenance"], case_sensitive=False))
@click.option("--reason", help="Why, for the audit.")
@click.option("--wait", is_flag=True, help="Show the drain's progress until the switch is done.")
@click.option(
    "--interval", type=float, default=0.5, show_default=True, help="Seconds between updates."
)
@click.option(
    "--timeout",
    type=float,
    default=3600.0,
    show_default=True,
    help="Seconds to wait for the answer (the switch answers once complete).",
)
def set_mode(
    url: str,
    token_file: str | None,
    mode: str,
    reason: str | None,
    wait: bool,
    interval: float,
    timeout: float,
) -> None:
    """Switch a running service to MODE; returns once the switch is complete."""
    client = _client(url, token_file)
    body: dict[str, str] = {"mode": mode.lower()}
    if reason:
        body["reason"] = reason
    outcome: dict[str, Any] = {}

    def post() -> None:
        try:
            outcome["answer"] = client.post_json(MODE_PATH, body, timeout=timeout)
        except ServiceError as exc:
            outcome["error"] = exc

    poster = threading.Thread(target=post, name="servermode-set", daemon=True)
    poster.start()
    poster.join(interval if wait else None)
    while poster.is_alive():
        _show_progress(client)
        poster.join(interval)
    if "error" in outcome:
        raise _fail(outcome["error"])
    answer, headers = outcome["answer"]
    how = headers.get("Servermode-Outcome", "completed")
    click.echo(f"server changed: {answer['server changed']} ({how})")


def _show_progress(client: ServiceClient) -> None:
    try:
        document = client.get(STATUS_PATH)
    except ServiceError as exc:
        click.echo(f"status unavailable: {exc}", err=True)
        return
    if "target" not in document:
        return
    in_flight = document.get("in_flight", {})
    busy = ", ".join(f"{k} {v}" for k, v in in_flight.items() if v) or "none"
    left = _seconds_between(document["system_time"], document["deadline"])
    click.echo(
        f"draining to {document['target']}: {sum(in_flight.values())} in flight ({busy}), "
        f"{left:.1f}s left"
    )


def _seconds_between(start: str, end: str) -> float:
    def parse(text: str) -> datetime:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))

    return max(0.0, (parse(end) - parse(start)).total_seconds())


HISTORY_COLUMNS: tuple[tuple[str, Callable[[Mapping[str, Any]], str]], ...] = (
    ("ID", lambda r: str(r.get("id", ""))),
    ("AT", lambda r: str(r["at"])[:19].replace("T", " ")),
    ("OUTCOME", lambda r: str(r["outcome"])),
    ("FROM", lambda r: str(r["from_state"])),
    ("TO", lambda r: str(r["to_state"])),
    ("MS", lambda r: f"{float(r.get('duration_ms') or 0):.0f}"),
    ("ACTOR", lambda r: str(r.get("actor") or "-")),
    ("CLIENT", lambda r: str(r.get("client") or "-")),
    ("REASON", lambda r: str(r.get("reason") or "")),
)


@main.command()
@_client_options
@click.option("--limit", type=int, default=20, show_default=True, help="How many records.")
@click.option("--before", type=int, help="Only records with a smaller id (paging).")
@click.option("--json", "as_json", is_flag=True, help="Print the records as JSON.")
def history(
    url: str, token_file: str | None, limit: int, before: int | None, as_json: bool
) -> None:
    """Print the recent mode transitions of a running service, newest first."""
    try:
        page = _client(url, token_file).get(TRANSITIONS_PATH, {"limit": limit, "before": before})
    except ServiceError as exc:
        raise _fail(exc) from None
    records = page["transitions"]
    if as_json:
        click.echo(json.dumps(records, indent=2))
        return
    click.echo(format_table(records))


def format_table(records: list[Mapping[str, Any]]) -> str:
    """Transition records as a text table, one line each, headed by the column names."""
    rows = [[name for name, _ in HISTORY_COLUMNS]]
    rows += [[cell(record) for _, cell in HISTORY_COLUMNS] for record in records]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HISTORY_COLUMNS))]
    return "\n".join(
        "  ".join(value.ljust(width) for value, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


# -- the diagram -----------------------------------------------------------------------------


@main.command()
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["mermaid", "dot", "svg"]),
    default="mermaid",
    show_default=True,
)
@click.option("--output", "-o", metavar="FILE", help="Write to FILE instead of printing.")
def diagram(fmt: str, output: str | None) -> None:
    """Print (or write) the state diagram, drawn from the transition table."""
    from servermode.core.diagram import render

    try:
        text = render("mermaid") if fmt == "mermaid" else render("dot")
    except ImportError as exc:
        raise click.ClickException(
            f"the {fmt} diagram needs the graphviz Python package ({exc})"
        ) from None
    data = text.encode()
    if fmt == "svg":
        dot = shutil.which("dot")
        if dot is None:
            raise click.ClickException(
                "svg needs Graphviz's dot program on PATH (e.g. apt-get install graphviz)"
            )
        data = subprocess.run([dot, "-Tsvg"], input=data, capture_output=True, check=True).stdout
    if output is None:
        click.echo(data.decode(), nl=False)
    else:
        with open(output, "wb") as file:
            file.write(data)
        click.echo(f"wrote {output}", err=True)
