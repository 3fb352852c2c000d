"""The composition root: settings in, a controller and the gated ASGI application out.

ReportStart                                   logs the mode in force once started
  └─ AccessLogMiddleware (--access-log)       one line per answer, the gate's refusals included
       └─ GateMiddleware(controller, rules)   classify, admit, count; starts the controller
            └─ AdminDispatch                  servermode's paths -> admin app, the rest -> app
                 ├─ admin_app(...)            /server/mode, /server/status, ... (Starlette)
                 └─ the app: --app module:attr, or the built-in demo

servermode's paths are one table (:mod:`.http.routes`), read by both the classification (in
the rules) and the dispatch, so a request is served by servermode exactly when it is
classified as servermode's.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

from servermode.core import CONTEXT_SERVICES, AdmissionPolicy, AuditLog, ModeController
from servermode.core.fleet import BypassFollower, FleetController
from starlette.types import ASGIApp, Scope
from uvicorn.importer import ImportFromStringError, import_from_string

from .cli.settings import Settings, SettingsError
from .http.access import AccessLogMiddleware
from .http.admin import admin_app
from .http.auth import TokenAuth
from .http.bypass import Bypass, hide_in_logs, hide_presented_secrets, parse_networks
from .http.classify import CONTEXT_SERVICES_RULES, RouteRules
from .http.demo import demo_app
from .http.dispatch import AdminDispatch
from .http.feed import AuditFeed
from .http.middleware import GateMiddleware
from .http.monitoring import Monitor, monitor_for
from .http.page import MaintenancePage
from .http.stats import RequestStats
from .http.webhooks import Webhooks, parse_urls
from .startup import ReportStart
from .store.factory import MEMORY, open_store
from .store.redis import RedisFleetEngine

__all__ = [
    "Service",
    "build_controller",
    "build_service",
    "default_instance_id",
    "fleet_bypass",
    "load_app",
    "load_rules",
    "worker_app",
]


@dataclass(frozen=True, slots=True)
class Service:
    """What ``servermode serve`` runs: the application, and the controller it gates through.

    ``monitor`` feeds the metrics and the event streams; ``monitor.close()`` ends the streams
    when the server begins to stop.
    """

    app: ASGIApp
    controller: ModeController
    stats: RequestStats
    monitor: Monitor
    instance: str | None = None  # the instance's name in its fleet, None without a fleet


def load_app(spec: str, app_dir: str = ".") -> ASGIApp:
    """The ASGI application named ``module:attr``, looked for in ``app_dir`` first.

    As uvicorn does (its ``--app-dir``, default the current folder): a console script's
    ``sys.path`` starts with the folder of the script, not the one it was started in, so a
    module beside the operator would otherwise not be found.
    """
    folder = Path(app_dir).resolve()
    if not folder.is_dir():
        raise SettingsError(f"--app-dir {app_dir}: no such folder")
    if str(folder) not in sys.path[:1]:
        sys.path.insert(0, str(folder))
    try:
        app = import_from_string(spec)
    except ImportFromStringError as exc:
        raise SettingsError(f"--app {spec}: {exc}") from None
    if not callable(app):
        raise SettingsError(f"--app {spec}: {type(app).__name__} is not an ASGI application")
    return cast(ASGIApp, app)


def load_rules(path: str) -> RouteRules:
    """Route rules from a JSON file (see :meth:`RouteRules.from_json`)."""
    try:
        data = json.loads(Path(path).read_text())
        return RouteRules.from_json(data)
    except OSError as exc:
        raise SettingsError(f"cannot read route rules {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise SettingsError(f"route rules {path}: {exc}") from None


def build_service(
    settings: Settings,
    app: ASGIApp | None = None,
    rules: RouteRules | None = None,
    policy: AdmissionPolicy | None = None,
    *,
    access_log: Callable[[Scope, int], None] | None = None,
) -> Service:
    """Wire the service that ``settings`` describe.

    ``app`` overrides ``settings.app``, and ``rules`` the rules file ``settings.rules`` (else
    the Context Services rules); ``policy`` is the admission policy (else Context Services).
    ``access_log`` (e.g. an :class:`.http.access.AccessLog`) is told of every HTTP answer,
    the gate's refusals included; without it there is no access-log layer at all.
    """
    if rules is None:
        rules = load_rules(settings.rules) if settings.rules else CONTEXT_SERVICES_RULES
    if policy is None:
        policy = CONTEXT_SERVICES
    try:
        rules.check(policy)
        auth = TokenAuth(settings.admin_token, settings.read_token)
        page = (
            MaintenancePage.from_file(settings.maintenance_page)
            if settings.maintenance_page
            else MaintenancePage()
        )
        bypass = Bypass(
            settings.bypass_secret,
            allow=parse_networks(settings.bypass_allow, "bypass allowlist"),
            trusted_proxies=parse_networks(settings.trusted_proxies, "trusted proxies"),
        )
        urls = parse_urls(settings.webhooks)
        if urls and settings.webhook_secret is None:
            raise ValueError(
                "webhooks need a secret to sign with: set SERVERMODE_WEBHOOK_SECRET or "
                "--webhook-secret-file"
            )
        webhooks = None
        if urls and settings.webhook_secret is not None:
            webhooks = Webhooks(urls, settings.webhook_secret)
    except ValueError as exc:
        raise SettingsError(str(exc)) from None
    if settings.bypass_secret is not None:
        hide_in_logs(settings.bypass_secret)
    feed = AuditFeed()  # the audit log, also feeding the metrics and the event streams
    controller = build_controller(settings, policy, feed)
    monitor = monitor_for(controller, feed)
    if webhooks is not None:
        if isinstance(controller, FleetController):
            webhooks.instance = controller.instance
        controller.subscribe(webhooks, timeout=webhooks.budget)
    if app is None:
        # The demo reports the state each request saw while it ran, read from the controller.
        app = (
            load_app(settings.app, settings.app_dir)
            if settings.app
            else demo_app(settings.demo_delay, observe=lambda: controller.state)
        )
    stats = RequestStats()
    admin = admin_app(
        controller,
        auth=auth,
        stats=stats,
        body_timeout=settings.body_timeout,
        bypass=bypass,
    )
    # In a fleet, the bypass is the fleet's: published at start, then followed (so the gate
    # keeps it even while it lets no one through). Alone, an empty one is not asked at all.
    in_fleet = isinstance(controller, FleetController)
    companions = (
        [fleet_bypass(bypass, controller)] if isinstance(controller, FleetController) else []
    )
    gated: ASGIApp = GateMiddleware(
        AdminDispatch(admin, app),
        controller,
        rules,
        stats,
        page=page,
        bypass=bypass if in_fleet or bypass.enabled else None,
        companions=companions,
    )
    if access_log is not None:
        gated = AccessLogMiddleware(gated, access_log)
    instance = controller.instance if isinstance(controller, FleetController) else None
    return Service(
        app=ReportStart(gated, controller, settings.state),
        controller=controller,
        stats=stats,
        monitor=monitor,
        instance=instance,
    )


def fleet_bypass(bypass: Bypass, controller: FleetController) -> BypassFollower:
    """The follower that makes ``bypass`` the fleet's (:mod:`servermode.core.fleet.bypass`)."""
    hide_presented_secrets()  # the fleet's secret may be one this instance was never given
    own = bypass.published(controller.instance, time.time())
    return BypassFollower(controller.engine, own, bypass.follow)


def worker_app() -> ASGIApp:
    """The service of one worker process of ``serve --workers N --fleet ...`` (a factory).

    Each worker is an instance of the fleet, named ``<instance id or host>:<pid>``. Its
    local history is in memory (several processes cannot share one state file): the fleet's
    records in Redis are the lasting ones.
    """
    from .cli.logging import configure_logging
    from .cli.options import resolve_serve
    from .http.access import AccessLog

    resolved = resolve_serve((), os.environ)
    settings = resolved.settings
    logs = configure_logging(settings.log_level, settings.log_format)
    access = AccessLog(logs.lines.write, as_json=logs.as_json) if settings.access_log else None
    name = f"{settings.instance_id or socket.gethostname()}:{os.getpid()}"
    worker = replace(settings, state=MEMORY, instance_id=name)
    service = build_service(
        worker, rules=resolved.rules(), policy=resolved.policy, access_log=access
    )
    return service.app


def default_instance_id() -> str:
    """``host:pid``: unique among the instances of a fleet, and says where to look."""
    return f"{socket.gethostname()}:{os.getpid()}"


def build_controller(
    settings: Settings, policy: AdmissionPolicy = CONTEXT_SERVICES, audit: AuditLog | None = None
) -> ModeController:
    """One process's controller, or (with ``--fleet``) an instance of a fleet on Redis."""
    options: dict[str, Any] = {
        "policy": policy,
        "initial_mode": settings.initial_mode,
        "drain_timeout": settings.drain_timeout,
        "timeout_policy": settings.timeout_policy,
        "refusal_retry_after": settings.retry_after,
        "audit": audit,
        "lame_duck": settings.lame_duck,
    }
    if settings.fleet is None:
        return ModeController(open_store(settings.state), **options)
    store = open_store(settings.state)
    engine = RedisFleetEngine(settings.fleet, prefix=settings.fleet_prefix)
    instance = settings.instance_id or default_instance_id()
    return FleetController(
        engine,
        store,
        instance=instance,
        heartbeat_ttl=settings.fleet_heartbeat_ttl,
        period=settings.fleet_period,
        **options,
    )
