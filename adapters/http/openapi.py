"""The OpenAPI 3.1 description of the admin routes, as data (served at ``/server/openapi.json``).

Tests keep it true: its paths and methods are those of the routes, and the answers of the
running routes validate against its schemas. Its enums are read from the core's enums, and
its paths from :mod:`.routes`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from servermode.core import Mode, Outcome, State, TimeoutPolicy, Verdict
from servermode.core.fleet import FleetOutcome, ReportOutcome
from servermode.core.window import WHEN_PATTERN

from ..version import VERSION
from .problems import Problem
from .routes import (
    BYPASS_PATH,
    CANCEL_PATH,
    EVENTS_PATH,
    FLEET_PATH,
    LIVE_PATH,
    METRICS_PATH,
    MODE_PATH,
    OPENAPI_PATH,
    READY_PATH,
    STATUS_PATH,
    TRANSITIONS_PATH,
    UI_PATH,
    UI_SCRIPT_PATH,
    UI_STYLE_PATH,
)

__all__ = ["MAX_RECORD_ID", "MODE_PATTERN", "OPENAPI", "response_schema"]

#: The largest record id there can be (SQLite's largest rowid): ``before`` is at most this.
MAX_RECORD_ID = 2**63 - 1


def _any_case(*words: str) -> str:
    """A pattern of ``words`` in any letter case (JSON Schema patterns have no ``(?i)``)."""
    spelled = ("".join(f"[{c.upper()}{c.lower()}]" for c in word) for word in words)
    return "^(" + "|".join(spelled) + ")$"


#: The mode a request may ask for: a mode name in any letter case, nothing around it. The
#: admin route checks this very pattern, so the document and the route cannot disagree.
MODE_PATTERN = _any_case(*Mode)


def _enum(values: type[StrEnum]) -> dict[str, Any]:
    """A string schema of every value of ``values``, in their order."""
    return {"type": "string", "enum": [value.value for value in values]}


_MODE = _enum(Mode)
_STATE = _enum(State)
_TIME = {
    "type": "string",
    "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$",
    "description": "UTC, yyyy-MM-ddTHH:mm:ss.SSSZ",
}
_KB = {"type": "integer", "minimum": 0, "description": "KB"}
_COUNT = {"type": "integer", "minimum": 0}
_COUNTS = {"type": "object", "additionalProperties": _COUNT}
_TEXT_OR_NULL = {"type": ["string", "null"]}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


_RETRY_AFTER = {
    "Retry-After": {"description": "seconds to wait", "schema": {"type": "integer", "minimum": 1}}
}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "description": "The Context Services error body.",
        "required": ["http_method", "title", "description", "code", "uri"],
        "properties": {
            "http_method": {"type": "string"},
            "title": {"type": "string", "enum": sorted({p.title for p in Problem})},
            "description": {"type": "string"},
            "code": {"type": "integer", "enum": [p.code for p in Problem]},
            "uri": {"type": "string"},
        },
        "additionalProperties": False,
    },
    "ModeRequest": {
        "type": "object",
        "required": ["mode"],
        "properties": {
            "mode": {
                "type": "string",
                "pattern": MODE_PATTERN,
                "description": "production or maintenance, case-insensitive",
                "examples": ["maintenance"],
            },
            "reason": {
                "type": ["string", "null"],
                "maxLength": 500,
                "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f]*$",
                "description": "kept in the audit (null: none)",
            },
            "instance": {
                "type": ["string", "null"],
                "minLength": 1,
                "maxLength": 200,
                "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f]*$",
                "description": "fleet mode: put this one live instance alone in the mode (out of "
                "the fleet), or back in the fleet when the mode is the fleet's",
            },
            "until": {
                "type": ["string", "null"],
                "maxLength": 64,
                "pattern": WHEN_PATTERN,
                "description": "maintenance only: when to return to production by itself (actor "
                "schedule): an RFC 3339 time with a zone, or a duration from the window's start "
                "such as 30m, 1h30m, 2d (at most 366 days ahead; null: no end)",
                "examples": ["30m", "2030-01-01T03:00:00Z"],
            },
            "start_at": {
                "type": ["string", "null"],
                "maxLength": 64,
                "pattern": WHEN_PATTERN,
                "description": "maintenance only: schedule the window to begin by itself then (an "
                "RFC 3339 time with a zone, or a duration from now); answered 202 (null: now)",
                "examples": ["2030-01-01T02:00:00Z", "10m"],
            },
            "dry_run": {
                "type": "boolean",
                "default": False,
                "description": "true: answer what a switch would do now (DryRun), change nothing",
            },
        },
    },
    "Window": {
        "type": "object",
        "required": ["start_at", "until", "reason"],
        "properties": {
            "start_at": {
                "anyOf": [_TIME, {"type": "null"}],
                "description": "when it begins by itself; null once begun",
            },
            "until": {
                "anyOf": [_TIME, {"type": "null"}],
                "description": "when it returns to production by itself; null: no end",
            },
            "reason": _TEXT_OR_NULL,
        },
        "additionalProperties": False,
    },
    "Scheduled": {
        "type": "object",
        "required": ["server scheduled"],
        "properties": {"server scheduled": _ref("Window")},
        "additionalProperties": False,
    },
    "DryRun": {
        "type": "object",
        "required": ["dry_run"],
        "properties": {
            "dry_run": {
                "type": "object",
                "required": [
                    "state",
                    "target",
                    "would",
                    "wait_for",
                    "refused_while_draining",
                    "refused_after",
                    "request_rates",
                    "rate_window_s",
                    "drain_timeout",
                    "timeout_policy",
                    "lame_duck",
                ],
                "properties": {
                    "state": _STATE,
                    "target": _MODE,
                    "would": {
                        **_enum(Verdict),
                        "description": "switch; noop (in force already); refused (a switch "
                        "is under way)",
                    },
                    "wait_for": {
                        **_COUNTS,
                        "description": "requests in flight now that the drain would wait for",
                    },
                    "refused_while_draining": {"type": "array", "items": {"type": "string"}},
                    "refused_after": {"type": "array", "items": {"type": "string"}},
                    "request_rates": {
                        "type": "object",
                        "additionalProperties": {"type": "number", "minimum": 0},
                        "description": "requests per second per category (admitted or refused)",
                    },
                    "rate_window_s": {
                        "type": "number",
                        "minimum": 0,
                        "description": "seconds the rates were measured over (up to 60)",
                    },
                    "drain_timeout": {"type": "number", "minimum": 0},
                    "timeout_policy": _enum(TimeoutPolicy),
                    "lame_duck": {
                        "type": "number",
                        "minimum": 0,
                        "description": "seconds readiness would fail before the drain begins",
                    },
                },
                "additionalProperties": False,
            }
        },
        "additionalProperties": False,
    },
    "ModeChanged": {
        "type": "object",
        "required": ["server changed"],
        "properties": {"server changed": _MODE},
        "additionalProperties": False,
    },
    "Status": {
        "type": "object",
        "required": [
            "version",
            "system_time",
            "mode",
            "started",
            "last_request",
            "max_memory",
            "allocated_memory",
            "free_memory",
            "used_memory",
            "request_today",
            "client_errors_today",
            "server_errors_today",
            "state",
            "since",
            "in_flight",
            "drain_timeout",
            "timeout_policy",
            "reason",
            "bypassed",
            "lame_duck",
        ],
        "properties": {
            "version": {"type": "string"},
            "system_time": _TIME,
            "mode": _MODE,
            "started": _TIME,
            "last_request": {"anyOf": [_TIME, {"type": "null"}]},
            "max_memory": _KB,
            "allocated_memory": _KB,
            "free_memory": _KB,
            "used_memory": _KB,
            "request_today": _COUNT,
            "client_errors_today": _COUNT,
            "server_errors_today": _COUNT,
            "state": _STATE,
            "since": _TIME,
            "in_flight": {**_COUNTS, "description": "counted requests in flight, per category"},
            "drain_timeout": {"type": "number", "minimum": 0},
            "timeout_policy": _enum(TimeoutPolicy),
            "reason": {
                **_TEXT_OR_NULL,
                "description": "the reason given for the mode in force or the switch under way",
            },
            "bypassed": {
                **_COUNTS,
                "description": "requests let through by a bypass since start, per category",
            },
            "lame_duck": {
                "type": "number",
                "minimum": 0,
                "description": "seconds a switch to maintenance fails readiness before it drains",
            },
            "lame_duck_until": {
                **_TIME,
                "description": "only in a lame duck: readiness fails, requests are still admitted "
                "until then, then the drain begins",
            },
            "window": {**_ref("Window"), "description": "only with a maintenance window"},
            "target": {**_MODE, "description": "only while draining"},
            "drain_started": {**_TIME, "description": "only while draining"},
            "deadline": {**_TIME, "description": "only while draining"},
            "waiting_for": {
                "type": "array",
                "items": {"type": "string"},
                "description": "only while draining: the categories the drain waits for "
                "(counted, refused by its target)",
            },
            "fleet": {**_ref("Fleet"), "description": "only with --fleet"},
        },
        "additionalProperties": False,
    },
    "Fleet": {
        "type": "object",
        "description": "the fleet as this instance last read it (no Redis call)",
        "required": ["instance", "engine", "epoch", "state", "mode", "instances"],
        "properties": {
            "instance": {"type": "string", "description": "this instance"},
            "out": {
                "anyOf": [_MODE, {"type": "null"}],
                "description": "this instance's own mode, while it is out of the fleet",
            },
            "engine": {"type": "string", "enum": ["connected", "lost"]},
            "engine_error": {"type": "string", "description": "only while lost"},
            "engine_lost_since": {**_TIME, "description": "only while lost"},
            "epoch": {"type": ["integer", "null"]},
            "state": {"anyOf": [_STATE, {"type": "null"}]},
            "mode": {"anyOf": [_MODE, {"type": "null"}]},
            "instances": {"type": "array", "items": _ref("FleetInstance")},
            "target": {**_MODE, "description": "only while the fleet drains"},
            "deadline": {**_TIME, "description": "only while the fleet drains"},
            "starter": {"type": ["string", "null"], "description": "who started the switch"},
            "not_drained": {
                "type": "array",
                "items": {"type": "string"},
                "description": "live instances that have not reported their drain",
            },
            "reported": {**_enum(ReportOutcome), "description": "this instance's drain report"},
            "bypass": {
                **_ref("FleetBypass"),
                "description": "only in GET /server/fleet: the fleet's bypass, as this instance "
                "honours it",
            },
        },
        "additionalProperties": False,
    },
    "FleetBypass": {
        "type": "object",
        "description": "the fleet's bypass: the one of the instance that joined last (never "
        "the secret nor a digest of it)",
        "required": ["secret", "allow", "published_by", "published_at"],
        "properties": {
            "secret": {"type": "boolean", "description": "whether a bypass secret is set"},
            "allow": {
                "type": "array",
                "items": {"type": "string"},
                "description": "the allowlist (CIDRs)",
            },
            "published_by": {
                "type": ["string", "null"],
                "description": "the instance that published it; null while this instance has "
                "not reached it yet (it honours its own meanwhile)",
            },
            "published_at": {"anyOf": [_TIME, {"type": "null"}]},
        },
        "additionalProperties": False,
    },
    "FleetInstance": {
        "type": "object",
        "required": ["instance", "epoch", "state", "in_flight", "since", "seen", "reported"],
        "properties": {
            "instance": {"type": "string"},
            "epoch": {"type": "integer", "description": "the fleet epoch it follows"},
            "state": _STATE,
            "in_flight": _COUNTS,
            "since": _TIME,
            "seen": {**_TIME, "description": "its last heartbeat"},
            "reported": {"anyOf": [_enum(ReportOutcome), {"type": "null"}]},
            "out": {
                "anyOf": [_MODE, {"type": "null"}],
                "description": "the mode it was put in alone, out of the fleet",
            },
        },
        "additionalProperties": False,
    },
    "FleetRecord": {
        "type": "object",
        "required": ["epoch", "from_state", "to_state", "outcome", "at", "instances", "expired"],
        "properties": {
            "epoch": {"type": "integer", "description": "the epoch of the drain"},
            "from_state": _STATE,
            "to_state": _STATE,
            "outcome": _enum(FleetOutcome),
            "at": {"type": "number", "description": "Unix time (seconds)"},
            "target": {"anyOf": [_MODE, {"type": "null"}]},
            "started": {"type": ["number", "null"], "description": "Unix time (seconds)"},
            "actor": _TEXT_OR_NULL,
            "reason": _TEXT_OR_NULL,
            "starter": _TEXT_OR_NULL,
            "completed_by": _TEXT_OR_NULL,
            "instances": {
                "type": "object",
                "additionalProperties": {"type": "string"},
                "description": "each instance counted: drained, timed_out or not_reported",
            },
            "expired": {"type": "array", "items": {"type": "string"}},
            "stragglers": {"type": "object", "additionalProperties": _COUNTS},
            "window": {
                "anyOf": [
                    {
                        "type": "object",
                        "required": ["start_at", "until", "reason"],
                        "properties": {
                            "start_at": {"type": ["number", "null"]},
                            "until": {"type": ["number", "null"]},
                            "reason": _TEXT_OR_NULL,
                        },
                        "additionalProperties": False,
                    },
                    {"type": "null"},
                ],
                "description": "the fleet's maintenance window after it (Unix times), or null",
            },
        },
        "additionalProperties": False,
    },
    "FleetPage": {
        "type": "object",
        "required": ["fleet", "records"],
        "properties": {
            "fleet": {
                "anyOf": [_ref("Fleet"), {"type": "null"}],
                "description": "null when the service runs without --fleet",
            },
            "records": {"type": "array", "items": _ref("FleetRecord")},
        },
        "additionalProperties": False,
    },
    "Transition": {
        "type": "object",
        "required": ["id", "from_state", "to_state", "target_mode", "outcome", "at"],
        "properties": {
            "id": {"type": "integer"},
            "from_state": _STATE,
            "to_state": _STATE,
            "trigger": _TEXT_OR_NULL,
            "target_mode": _MODE,
            "outcome": _enum(Outcome),
            "at": {"type": "string", "description": "ISO 8601"},
            "duration_ms": {"type": "number"},
            "actor": _TEXT_OR_NULL,
            "client": _TEXT_OR_NULL,
            "request_id": _TEXT_OR_NULL,
            "reason": _TEXT_OR_NULL,
            "in_flight": _COUNTS,
            "stragglers": _COUNTS,
            "closed": {**_COUNTS, "description": "WebSockets closed when the drain began"},
            "lame_duck": {
                "type": "number",
                "minimum": 0,
                "description": "seconds readiness failed (requests admitted) before the drain",
            },
            "window": {
                "type": "object",
                "properties": {"start_at": _TEXT_OR_NULL, "until": _TEXT_OR_NULL},
                "additionalProperties": False,
                "description": "the maintenance window the change set (ISO 8601), if any",
            },
            "fleet": {
                "anyOf": [_ref("FleetRecord"), {"type": "object", "maxProperties": 0}],
                "description": "fleet mode: this instance's part in a fleet switch carries the "
                "switch's fleet record (each instance's outcome, the epoch...), as GET "
                "/server/fleet lists it; empty otherwise",
            },
        },
        "additionalProperties": False,
    },
    "TransitionPage": {
        "type": "object",
        "required": ["transitions", "next_before"],
        "properties": {
            "transitions": {"type": "array", "items": _ref("Transition")},
            "next_before": {
                "type": ["integer", "null"],
                "description": "pass as ?before= for the next page; null on the last page",
            },
        },
        "additionalProperties": False,
    },
    "CancelRequest": {
        "type": "object",
        "properties": {
            "reason": {
                "type": ["string", "null"],
                "maxLength": 500,
                "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f]*$",
                "description": "kept in the audit (null: none)",
            }
        },
        "additionalProperties": False,
    },
    "Health": {
        "type": "object",
        "required": ["status"],
        "properties": {
            "status": {"type": "string", "enum": ["live", "ready", "not ready"]},
            "mode": _MODE,
            "state": _STATE,
            "fleet": {"type": "string", "enum": ["connected", "lost"]},
        },
        "additionalProperties": False,
    },
}

_READ_SECURITY: list[dict[str, list[str]]] = [{}, {"bearer": []}]

PATHS: dict[str, Any] = {
    MODE_PATH: {
        "post": {
            "summary": "Switch the server mode; answers once the switch is complete",
            "operationId": "setServerMode",
            "security": [{}, {"bearer": []}],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _ref("ModeRequest")}},
            },
            "responses": {
                "200": {
                    **_json(
                        {"oneOf": [_ref("ModeChanged"), _ref("DryRun")]},
                        "the mode in force now; or, for a dry run, what a switch would do",
                    ),
                    "headers": {"Location": {"schema": {"type": "string", "const": STATUS_PATH}}},
                },
                "202": {
                    **_json(_ref("Scheduled"), "a maintenance window scheduled to begin later"),
                    "headers": {"Location": {"schema": {"type": "string", "const": STATUS_PATH}}},
                },
                "400": _error(
                    "bad, missing or non-string mode; malformed JSON; a window time in the past, "
                    "ending before it begins, more than 366 days ahead, or given with production"
                ),
                "401": _error("no or wrong bearer token (when an admin token is configured)"),
                "403": _error("the read token cannot change the mode"),
                "405": _error("method not allowed"),
                "408": _error("the body did not arrive within the body timeout"),
                "413": _error("body over the size limit"),
                "415": _error("body not declared JSON (Content-Type), or no Content-Type"),
                "409": _error("no live instance of that name (or no fleet) for the instance"),
                "503": {
                    **_error(
                        "a switch is under way, the drain timed out under the rollback policy, "
                        "or the state could not be saved: the mode did not change"
                    ),
                    "headers": _RETRY_AFTER,
                },
            },
        }
    },
    STATUS_PATH: {
        "get": {
            "summary": "Server status: Context Services fields, state and drain",
            "operationId": "getServerStatus",
            "security": _READ_SECURITY,
            "responses": {
                "200": _json(_ref("Status"), "the status"),
                "401": _error("no or wrong bearer token (when a read token is configured)"),
            },
        }
    },
    TRANSITIONS_PATH: {
        "get": {
            "summary": "Recent transition records, newest first",
            "operationId": "getTransitions",
            "security": _READ_SECURITY,
            "parameters": [
                {
                    "name": "limit",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 50},
                },
                {
                    "name": "before",
                    "in": "query",
                    "description": "only records with a smaller id",
                    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_RECORD_ID},
                },
            ],
            "responses": {
                "200": _json(_ref("TransitionPage"), "a page of records"),
                "400": _error("bad limit or before"),
                "401": _error("no or wrong bearer token (when a read token is configured)"),
                "503": _error("the store could not be read"),
            },
        }
    },
    FLEET_PATH: {
        "get": {
            "summary": "The fleet's instances and its recent records (null without --fleet)",
            "operationId": "getFleet",
            "security": _READ_SECURITY,
            "parameters": [
                {
                    "name": "limit",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 50},
                },
            ],
            "responses": {
                "200": _json(_ref("FleetPage"), "the fleet"),
                "400": _error("bad limit"),
                "401": _error("no or wrong bearer token (when a read token is configured)"),
                "503": _error("the fleet engine could not be read"),
            },
        }
    },
    CANCEL_PATH: {
        "post": {
            "summary": "Cancel the mode change under way (the mode it is leaving stays), and end "
            "the maintenance window",
            "operationId": "cancelModeChange",
            "security": [{}, {"bearer": []}],
            "requestBody": {
                "required": False,
                "content": {"application/json": {"schema": _ref("CancelRequest")}},
            },
            "responses": {
                "200": _json(
                    _ref("Transition"),
                    "how the drain ended (cancelled, or first); without one, the window ended",
                ),
                "400": _error('a body that is not {"reason": "..."}'),
                "401": _error("no or wrong bearer token (when an admin token is configured)"),
                "403": _error("the read token cannot cancel"),
                "408": _error("the body did not arrive within the body timeout"),
                "409": _error("no mode change is under way and no maintenance window is set"),
                "413": _error("body over the size limit"),
                "415": _error("body not JSON"),
                "503": _error("the state could not be saved"),
            },
        }
    },
    METRICS_PATH: {
        "get": {
            "summary": "Prometheus metrics of this process (servermode_*, process_*, python_*)",
            "operationId": "getMetrics",
            "security": _READ_SECURITY,
            "responses": {
                "200": {
                    "description": "the Prometheus text format (OpenMetrics when accepted)",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                },
                "401": _error("no or wrong bearer token (when a read token is configured)"),
            },
        }
    },
    EVENTS_PATH: {
        "get": {
            "summary": "Server-sent events: hello, status (when it changes), transition, shutdown",
            "description": (
                "Each event's data is one line of JSON: hello {principal, can_switch, switch}, "
                "status (the Status document; every 0.5 s while draining), transition (a "
                "Transition, as it is recorded), shutdown (last, when the service stops). "
                "A ': keepalive' comment every 15 s of silence. Try: curl -N URL."
            ),
            "operationId": "getEvents",
            "security": _READ_SECURITY,
            "responses": {
                "200": {
                    "description": "an event stream that ends when the service stops",
                    "content": {"text/event-stream": {"schema": {"type": "string"}}},
                },
                "401": _error("no or wrong bearer token (when a read token is configured)"),
            },
        }
    },
    **{
        path: {
            "get": {
                "summary": summary,
                "operationId": operation,
                "security": [{}],
                "responses": {
                    "200": {
                        "description": "a static file",
                        "content": {media: {"schema": {"type": "string"}}},
                    }
                },
            }
        }
        for path, summary, operation, media in (
            (UI_PATH, "The admin page (asks for a token)", "getAdminPage", "text/html"),
            (UI_STYLE_PATH, "The page's stylesheet", "getAdminPageStyle", "text/css"),
            (UI_SCRIPT_PATH, "The page's script", "getAdminPageScript", "text/javascript"),
        )
    },
    LIVE_PATH: {
        "get": {
            "summary": "Liveness: 200 while the process serves",
            "operationId": "getLive",
            "security": [{}],
            "responses": {"200": _json(_ref("Health"), "alive")},
        }
    },
    READY_PATH: {
        "get": {
            "summary": "Readiness: 200 only in production, with no switch under way (nor its lame "
            "duck)",
            "operationId": "getReady",
            "security": [{}],
            "responses": {
                "200": _json(_ref("Health"), "in production"),
                "503": {
                    **_json(_ref("Health"), "in maintenance or switching"),
                    "headers": _RETRY_AFTER,
                },
            },
        }
    },
    BYPASS_PATH: {
        "get": {
            "summary": "The bypass link: sets the bypass cookie and redirects",
            "operationId": "getBypassCookie",
            "security": [{}],
            "parameters": [
                {"name": "secret", "in": "query", "required": True, "schema": {"type": "string"}},
                {
                    "name": "next",
                    "in": "query",
                    "description": "a path of this site to go to (default /)",
                    "schema": {"type": "string"},
                },
            ],
            "responses": {
                "303": {
                    "description": "the cookie is set; on to next",
                    "headers": {"Set-Cookie": {"schema": {"type": "string"}}},
                },
                "403": _error("wrong bypass secret"),
                "404": _error("no bypass secret is configured"),
            },
        }
    },
    OPENAPI_PATH: {
        "get": {
            "summary": "This document",
            "operationId": "getOpenApi",
            "security": [{}],
            "responses": {"200": {"description": "OpenAPI 3.1 document"}},
        }
    },
}

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "servermode",
        "version": VERSION,
        "description": (
            "Switch a server between production and maintenance mode safely "
            "(Context Services 'Set Server Mode' compatible)."
        ),
    },
    "paths": PATHS,
    "components": {
        "schemas": SCHEMAS,
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
    },
}


def response_schema(path: str, method: str, status: int) -> dict[str, Any] | None:
    """The documented JSON schema of one answer, self-contained (its $refs resolve)."""
    response = PATHS[path][method.lower()]["responses"][str(status)]
    content = response.get("content")
    if content is None:
        return None
    return {**content["application/json"]["schema"], "components": {"schemas": SCHEMAS}}
