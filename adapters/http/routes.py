"""The routes servermode owns: exact paths under ``/server/``, one table.

Everything that needs to know which requests are servermode's reads this table: the dispatch
that serves them (:class:`.dispatch.AdminDispatch`), the classification that gives them their
category (:class:`.classify.RouteRules`), the admin routes, the OpenAPI document and the CLI.
What servermode classifies as its own is therefore exactly what it serves.

A path is servermode's when it is one of :data:`SERVER_ROUTES` **exactly**: the same letters in
the same case, no trailing slash, nothing under it. The path compared is ``scope["path"]`` as
the gate middleware hands it on (in normal form: dot segments resolved, repeated slashes
collapsed), so the classification and the dispatch see one and the same path. Every other
path, whatever its prefix or case (``/server/export``, ``/SERVER/MODE``, ``/server/status/``,
``/health/live``, ``/openapi.json``), is the application's, and the route rules classify it.

This module is standard library only: the CLI imports it without the web stack.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

__all__ = [
    "ADMIN",
    "BYPASS_PATH",
    "CANCEL_PATH",
    "EVENTS_PATH",
    "FLEET_PATH",
    "LIVE_PATH",
    "METRICS_PATH",
    "MODE_PATH",
    "OPENAPI_PATH",
    "READY_PATH",
    "SERVER",
    "SERVER_CATEGORIES",
    "SERVER_ROUTES",
    "STATUS_PATH",
    "TRANSITIONS_PATH",
    "UI_PATH",
    "UI_SCRIPT_PATH",
    "UI_STYLE_PATH",
    "owns",
    "server_category",
]

MODE_PATH = "/server/mode"
STATUS_PATH = "/server/status"
TRANSITIONS_PATH = "/server/transitions"
FLEET_PATH = "/server/fleet"
LIVE_PATH = "/server/health/live"
READY_PATH = "/server/health/ready"
OPENAPI_PATH = "/server/openapi.json"
#: The bypass link: sets the bypass cookie for a browser (:mod:`.bypass`).
BYPASS_PATH = "/server/bypass"
CANCEL_PATH = "/server/cancel"
METRICS_PATH = "/server/metrics"
EVENTS_PATH = "/server/events"
UI_PATH = "/server/ui"
UI_STYLE_PATH = "/server/ui/style.css"
UI_SCRIPT_PATH = "/server/ui/app.js"

#: The mode switch's category: it passes the gate in every state and is never counted (the
#: controller itself refuses a switch during a drain, and audits the refusal).
ADMIN = "admin"
#: The category of servermode's other requests (status, history, probes, the API description,
#: and any method a route answers with 405): always admitted, never counted.
SERVER = "server"
SERVER_CATEGORIES = frozenset({ADMIN, SERVER})

#: Each path servermode owns -> the methods that change the mode there (category ``admin``).
#: Any other request to one of these paths is ``server``.
SERVER_ROUTES: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        MODE_PATH: frozenset({"POST"}),
        STATUS_PATH: frozenset(),
        TRANSITIONS_PATH: frozenset(),
        FLEET_PATH: frozenset(),
        LIVE_PATH: frozenset(),
        READY_PATH: frozenset(),
        OPENAPI_PATH: frozenset(),
        BYPASS_PATH: frozenset(),
        CANCEL_PATH: frozenset({"POST"}),  # ends a mode change: admitted as the switch is
        METRICS_PATH: frozenset(),
        EVENTS_PATH: frozenset(),  # a stream that never ends by itself: never counted
        UI_PATH: frozenset(),
        UI_STYLE_PATH: frozenset(),
        UI_SCRIPT_PATH: frozenset(),
    }
)


def owns(path: str) -> bool:
    """Whether ``path`` (``scope["path"]``, in normal form) is one of servermode's routes."""
    return path in SERVER_ROUTES


def server_category(method: str, path: str) -> str | None:
    """servermode's category of a request to one of its routes; None for the app's paths.

    The method is compared as sent, as the route that serves it compares it (a ``post`` is
    answered 405, so it is ``server``, not ``admin``).
    """
    admin_methods = SERVER_ROUTES.get(path)
    if admin_methods is None:
        return None
    return ADMIN if method in admin_methods else SERVER
