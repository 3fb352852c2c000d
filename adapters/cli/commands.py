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
import sys
import threading
import uuid
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import click
from servermode.core import StoreError
from servermode.core.logs import get_logger

from ..http.routes import CANCEL_PATH, MODE_PATH, STATUS_PATH, TRANSITIONS_PATH
from ..version import VERSION
from .client import ServiceClient, ServiceError
from .config import CONFIG_ENV
from .effective import effective_config, format_config
from .options import Resolved, resolve, serve_options
from .progress import DrainProgress, describe_drain
from .settings import (
    Settings,
    SettingsError,
    check_exposure,
    env_name,
    read_token_file,
    settings_environment,
)

__all__ = ["main"]

F = TypeVar("F", bound=Callable[..., Any])
DEFAULTS = Settings()
#: Seconds a graceful stop waits beyond the drain timeout before it cancels requests.
GRACE_MARGIN = 1


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(VERSION, "--version", "-V", prog_name="servermode")
def main() -> None:
    """Put a server in production or maintenance mode and switch between them safely."""


# -- serve -----------------------------------------------------------------------------------


@main.command()
@serve_options
def serve(**values: Any) -> None:
    """Serve the admin routes and the gated application with uvicorn.

    Each setting is a flag, a SERVERMODE_* variable and a key of the config file's [serve]
    table; a flag wins over its variable, which wins over the file.
    """

    from ..bootstrap import build_service
    from ..http.access import AccessLog
    from ..http.events import run_server
    from .logging import configure_logging

    try:
        resolved = resolve(click.get_current_context(), values)
        settings = resolved.settings
        check_exposure(settings)
        logs = configure_logging(settings.log_level, settings.log_format)
        if settings.workers > 1:  # with --fleet only (the settings refuse it otherwise)
            resolved.rules()  # a bad rules file is refused here, not in every worker
            _serve_workers(resolved)
            return
        access = AccessLog(logs.lines.write, as_json=logs.as_json) if settings.access_log else None
        # Opens the state file and takes its lock: a second process on it stops here.
        service = build_service(
            settings, rules=resolved.rules(), policy=resolved.policy, access_log=access
        )
    except (SettingsError, StoreError) as exc:
        raise click.ClickException(str(exc)) from None
    get_logger("servermode").info(
        "servermode_serving",
        url=f"http://{settings.host}:{settings.port}",
        app=settings.app or "demo",
        config=str(resolved.config.path) if resolved.config is not None else None,
        policy=resolved.policy_source,
        rules=resolved.rules_source,
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
        # servermode writes its own access lines (--access-log): uvicorn's stay off, and off
        # entirely: uvicorn builds each line's arguments whenever its logger has a handler
        # anywhere up the tree, even at a level that then drops the line.
        access_log=False,
        # One process: uvicorn would otherwise read WEB_CONCURRENCY (see workers_refusal).
        workers=1,
        # X-Forwarded-For replaces the client (audited, logged) only from listed proxies:
        # uvicorn trusts 127.0.0.1 by default, so any local process could forge the client.
        proxy_headers=settings.forwarded_allow_ips is not None,
        forwarded_allow_ips=settings.forwarded_allow_ips or "",
        # A stop (SIGTERM, Ctrl-C) gives running requests as long as a drain would, plus a
        # moment to answer a switch that drained, then cancels them: a hung request must not
        # keep the process alive forever (uvicorn waits without a bound by default).
        timeout_graceful_shutdown=math.ceil(settings.drain_timeout + settings.lame_duck)
        + GRACE_MARGIN,
    )


def _serve_workers(resolved: Resolved) -> None:
    """``--workers N --fleet``: N uvicorn worker processes, each an instance of the fleet.

    The workers rebuild the service from the environment (``bootstrap.worker_app``): the
    resolved settings go there first (tokens included: the environment is one of their
    channels anyway), and the config file's path for its categories and routes.
    """
    import uvicorn

    settings = resolved.settings
    os.environ.update(settings_environment(settings))
    if resolved.config is not None:
        os.environ[CONFIG_ENV] = str(resolved.config.path)
    get_logger("servermode").info(
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
        access_log=False,  # each worker writes servermode's own (bootstrap.worker_app)
        proxy_headers=settings.forwarded_allow_ips is not None,
        forwarded_allow_ips=settings.forwarded_allow_ips or "",
        timeout_graceful_shutdown=math.ceil(settings.drain_timeout) + GRACE_MARGIN,
    )


@main.command(name="config")
@serve_options
@click.option("--json", "as_json", is_flag=True, help="Print it all as JSON.")
def show_config(as_json: bool, **values: Any) -> None:
    """Print the settings, categories and route rules `serve` would run with, and where each
    value comes from (flag, variable, config file, default). Tokens are masked."""
    try:
        resolved = resolve(click.get_current_context(), values)
        report = effective_config(resolved)
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps(report, indent=2) if as_json else format_config(report))


# -- talking to a running service ------------------------------------------------------------


def _client_options(command: F) -> F:
    port = os.environ.get(env_name("port"), str(DEFAULTS.port))
    command = click.option(
        "--url",
        envvar=env_name("url"),
        default=f"http://127.0.0.1:{port}",
        show_default=True,
        show_envvar=True,
        help="The service.",
    )(command)
    command = click.option(
        "--token-file",
        metavar="FILE",
        envvar=env_name("token_file"),
        show_envvar=True,
        help=f"File holding the bearer token; or set {env_name('token')} "
        f"(else {env_name('admin_token')} is used).",
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
    not_drained = fleet.get("not_drained")
    lines = [
        f"fleet: epoch {fleet.get('epoch')}, {fleet.get('state')}, Redis {fleet.get('engine')}"
        + (f" ({fleet['engine_error']})" if fleet.get("engine_error") else "")
        + (f"; not drained: {', '.join(not_drained) or '-'}" if not_drained is not None else "")
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
@click.option(
    "--until",
    metavar="WHEN",
    help="Maintenance only: return to production by itself then (RFC 3339 time, or a "
    "duration from the start such as 30m, 1h30m, 2d).",
)
@click.option(
    "--at",
    "start_at",
    metavar="WHEN",
    help="Maintenance only: do not switch now; schedule the window to begin then "
    "(RFC 3339 time, or a duration from now).",
)
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
    until: str | None,
    start_at: str | None,
    wait: bool,
    interval: float,
    timeout: float,
) -> None:
    """Switch a running service to MODE; returns once the switch is complete.

    With --at, schedules a maintenance window instead, and returns at once.

    Interrupting it (Ctrl-C) stops only the watching: the switch goes on in the service;
    `servermode cancel` abandons it.
    """
    client = _client(url, token_file)
    mode = mode.lower()
    body: dict[str, str] = {"mode": mode}
    if reason:
        body["reason"] = reason
    if until:
        body["until"] = until
    if start_at:
        body["start_at"] = start_at
    # Our own request id: the history record of this very switch can be found by it.
    request_id = uuid.uuid4().hex
    outcome: dict[str, Any] = {}

    def post() -> None:
        try:
            outcome["answer"] = client.post_json(
                MODE_PATH, body, timeout=timeout, headers={"X-Request-ID": request_id}
            )
        except ServiceError as exc:
            outcome["error"] = exc

    progress = DrainProgress(sys.stdout)
    poster = threading.Thread(target=post, name="servermode-set", daemon=True)
    try:
        poster.start()
        poster.join(interval if wait else None)
        while poster.is_alive():
            _show_progress(client, progress)
            poster.join(interval)
    except KeyboardInterrupt:
        progress.finish()
        click.echo(_still_switching(client, mode), err=True)
        sys.exit(EXIT_INTERRUPTED)
    progress.finish()
    if "error" in outcome:
        raise _fail(outcome["error"])
    answer, headers = outcome["answer"]
    if "server scheduled" in answer:
        window = answer["server scheduled"]
        ends = f" until {window['until']}" if window.get("until") else ""
        click.echo(f"server scheduled: maintenance from {window['start_at']}{ends}")
        return
    how = headers.get("Servermode-Outcome", "completed")
    if how == "forced":
        how = _forced(client, request_id)
    click.echo(f"server changed: {answer['server changed']} ({how})")


#: The exit status of a command interrupted with Ctrl-C (128 + SIGINT), as shells report it.
EXIT_INTERRUPTED = 130


def _show_progress(client: ServiceClient, progress: DrainProgress) -> None:
    try:
        document = client.get(STATUS_PATH)
    except ServiceError as exc:
        progress.problem(str(exc))
        return
    progress.show(document)


def _still_switching(client: ServiceClient, mode: str) -> str:
    """What Ctrl-C during `set` leaves behind: the switch goes on in the service."""
    stopped = "Interrupted: this command stopped waiting"
    remedy = "`servermode status` shows it; `servermode cancel` abandons it"
    try:
        document = client.with_timeout(2).get(STATUS_PATH)
    except ServiceError:
        return (
            f"{stopped}, but the switch to {mode}, if the service received it, continues there: "
            f"{remedy} and keeps the mode in force."
        )
    described = describe_drain(document)
    if described is None:
        return f"{stopped}; the service is in {document.get('mode')} mode, no switch under way."
    return (
        f"{stopped}, but the switch continues on the service ({described[1]}): {remedy} "
        f"and keeps {document.get('mode')} mode."
    )


def _forced(client: ServiceClient, request_id: str) -> str:
    """``forced: N requests still running (category N, ...)``, read from the switch's record."""
    try:
        page = client.get(TRANSITIONS_PATH, {"limit": FORCED_LOOKUP})
        record = next(r for r in page["transitions"] if r.get("request_id") == request_id)
    except (ServiceError, StopIteration, KeyError, TypeError):
        return "forced: the drain timed out with requests still running"
    stragglers: Mapping[str, int] = record.get("stragglers") or {}
    total = sum(stragglers.values())
    which = ", ".join(f"{category} {count}" for category, count in stragglers.items() if count)
    noun = "request" if total == 1 else "requests"
    return f"forced: {total} {noun} still running" + (f": {which}" if which else "")


#: How many of the newest records are searched for the switch just made (others may follow it).
FORCED_LOOKUP = 20


def _counts(counts: Mapping[str, int] | None) -> str:
    """``{"profile": 2}`` as ``profile=2``, or ``-`` when there are none."""
    shown = ",".join(f"{name}={n}" for name, n in (counts or {}).items() if n)
    return shown or "-"


@main.command()
@_client_options
@click.option("--reason", help="Why, for the audit.")
def cancel(url: str, token_file: str | None, reason: str | None) -> None:
    """Abandon the mode switch under way: the mode it is leaving stays in force.

    Exits 1 when no switch is under way.
    """
    body = {"reason": reason} if reason else {}
    try:
        record, _ = _client(url, token_file).post_json(CANCEL_PATH, body)
    except ServiceError as exc:
        raise _fail(exc) from None
    click.echo(describe_cancel(record))


def describe_cancel(record: Mapping[str, Any]) -> str:
    """What a cancel did, from the record it answered with."""
    stays = str(record["to_state"])
    target = record.get("target_mode")
    if record.get("outcome") != "cancelled":
        return (
            f"too late: the switch to {target} had already ended ({record.get('outcome')}); "
            f"the server is in {stays} mode"
        )
    running = _counts(record.get("stragglers"))
    still = "" if running == "-" else f"; requests still running then: {running}"
    return f"cancelled: the switch to {target} was abandoned, {stays} mode stays{still}"


HISTORY_COLUMNS: tuple[tuple[str, Callable[[Mapping[str, Any]], str]], ...] = (
    ("ID", lambda r: str(r.get("id", ""))),
    ("AT", lambda r: str(r["at"])[:19].replace("T", " ")),
    ("OUTCOME", lambda r: str(r["outcome"])),
    ("FROM", lambda r: str(r["from_state"])),
    ("TO", lambda r: str(r["to_state"])),
    ("MS", lambda r: f"{float(r.get('duration_ms') or 0):.0f}"),
    ("ACTOR", lambda r: str(r.get("actor") or "-")),
    ("CLIENT", lambda r: str(r.get("client") or "-")),
    ("STRAGGLERS", lambda r: _counts(r.get("stragglers"))),
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
            f"the {fmt} diagram needs the graphviz Python package ({exc}): install it with "
            "`pip install 'servermode[diagram]'` (in this repository: `.venv/bin/pip install "
            "graphviz`), or use --format mermaid, which needs nothing more"
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
