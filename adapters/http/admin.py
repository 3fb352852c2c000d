"""The admin routes (Starlette): switch the mode, read status and history, health probes.

Their paths are the table of :mod:`.routes`, all under ``/server/``. ``POST /server/mode``
answers only once the switch is complete (Context Services' contract): 200,
``Location: /server/status``, body exactly ``{"server changed":"<mode>"}``. Every failure is a
:class:`.problems.ProblemError` (or a core error) raised where it is found and answered with
the error body by one handler (:func:`.problems.answering_problems`). The routes share the
controller with the gate middleware, which starts it.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import unicodedata
import uuid
from typing import Any

from servermode.core import InvalidMode, ModeController, Outcome, State, parse_mode
from servermode.core.fleet import FleetController, NoSuchInstance
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from .auth import Role, TokenAuth
from .bypass import Bypass
from .mode_request import ModeRequest, read_options
from .monitoring import monitoring_routes
from .openapi import MAX_RECORD_ID, MODE_PATTERN, OPENAPI
from .problems import ERROR_HANDLERS, Problem, ProblemError, answering_problems
from .routes import (
    BYPASS_PATH,
    FLEET_PATH,
    LIVE_PATH,
    MODE_PATH,
    OPENAPI_PATH,
    READY_PATH,
    STATUS_PATH,
    TRANSITIONS_PATH,
)
from .stats import RequestStats, stats_for
from .status import fleet_document, status_json, window_document

__all__ = [
    "DEFAULT_BODY_TIMEOUT",
    "DEFAULT_MAX_BODY",
    "HISTORY_LIMITS",
    "AdminRoutes",
    "admin_app",
    "admin_routes",
]

#: The largest ``POST /server/mode`` body read (bytes): the real one is about 25.
DEFAULT_MAX_BODY = 1024
#: Seconds a client may take to send the whole mode request body (slow-loris bound).
DEFAULT_BODY_TIMEOUT = 10.0
#: Bounds of ``GET /server/transitions?limit=N`` and its default.
HISTORY_LIMITS = (1, 500)
HISTORY_DEFAULT = 50
MAX_REASON = 500
MAX_INSTANCE = 200
MAX_REQUEST_ID = 128


class AdminRoutes:
    """The admin endpoints over one controller.

    Parameters:
        controller: the controller the gate middleware also uses.
        auth: bearer-token checks (default: everything open).
        stats: request counters for the status document (default: the controller's).
        max_body: the largest mode request body accepted, in bytes.
        body_timeout: seconds the whole mode request body may take to arrive; a slower one
            gets 408 (uvicorn bounds idle connections, not a body that trickles in).
        bypass: who may pass a refusing gate; its link is ``GET /server/bypass``.
    """

    def __init__(
        self,
        controller: ModeController,
        *,
        auth: TokenAuth | None = None,
        stats: RequestStats | None = None,
        max_body: int = DEFAULT_MAX_BODY,
        body_timeout: float = DEFAULT_BODY_TIMEOUT,
        bypass: Bypass | None = None,
    ) -> None:
        self.controller = controller
        self.bypass = bypass if bypass is not None else Bypass()
        self.auth = auth if auth is not None else TokenAuth()
        self.stats = stats if stats is not None else stats_for(controller)
        self.max_body = max_body
        self.body_timeout = body_timeout

    def routes(self) -> list[BaseRoute]:
        """One route per path of :data:`.routes.SERVER_ROUTES` (a test keeps them equal)."""
        endpoints: list[tuple[str, Any, str]] = [
            # Status first: pollers ask for it most, and routes are matched in order.
            (STATUS_PATH, self.status, "GET"),
            (MODE_PATH, self.set_mode, "POST"),
            (TRANSITIONS_PATH, self.transitions, "GET"),
            (FLEET_PATH, self.fleet, "GET"),
            (LIVE_PATH, self.live, "GET"),
            (READY_PATH, self.ready, "GET"),
            (OPENAPI_PATH, self.openapi, "GET"),
            (BYPASS_PATH, self.bypass_link, "GET"),
        ]
        return [
            *(
                Route(path, answering_problems(endpoint), methods=[method])
                for path, endpoint, method in endpoints
            ),
            *monitoring_routes(self.controller, auth=self.auth, stats=self.stats),
        ]

    # -- endpoints -------------------------------------------------------------------------

    async def set_mode(self, request: Request) -> Response:
        principal = self.auth.require(request.headers.get("authorization"), Role.ADMIN)
        asked = _parse_mode_request(await self._read_json_body(request))
        fleet = self.controller if isinstance(self.controller, FleetController) else None
        if asked.instance is not None and fleet is None:
            raise NoSuchInstance(asked.instance)
        if asked.instance is not None and (asked.until or asked.start_at):
            raise ProblemError(
                Problem.BAD_PARAMETER,
                "a maintenance window (until, start_at) is the fleet's: ask for it without "
                "instance",
            )
        if asked.dry_run:
            if fleet is not None:  # the requests in flight across the fleet, freshly read
                await fleet.fleet.refresh_members()
            plan = self.controller.dry_run(asked.mode)
            return JSONResponse({"dry_run": plan.to_dict()}, headers={"Cache-Control": "no-store"})
        request_id = _request_id(request)
        who = {"actor": principal.name, "client": _client(request), "request_id": request_id}
        if asked.instance is not None and fleet is not None:  # one instance out, or back in
            record = await fleet.switch_instance(
                asked.instance, asked.mode, reason=asked.reason, **who
            )
        else:
            record = await self.controller.set_mode(
                asked.mode,
                reason=asked.reason,
                until=asked.until,
                start_at=asked.start_at,
                **who,
            )
        if record.outcome is Outcome.SCHEDULED:
            return JSONResponse(
                {"server scheduled": window_document(self.controller.window)},
                status_code=202,
                headers={
                    "Location": STATUS_PATH,
                    "X-Request-ID": request_id,
                    "Servermode-Outcome": record.outcome.value,
                },
            )
        body = json.dumps({"server changed": record.to_state.mode.value}, separators=(",", ":"))
        return Response(
            body,
            media_type="application/json",
            headers={
                "Location": STATUS_PATH,
                "X-Request-ID": request_id,
                "Servermode-Outcome": record.outcome.value,
            },
        )

    async def status(self, request: Request) -> Response:
        if self.auth.guards(Role.READER):  # reading the headers costs, and status is polled
            self.auth.require(request.headers.get("authorization"), Role.READER)
        if isinstance(
            self.controller, FleetController
        ):  # the instances, read at most once a second
            await self.controller.fleet.refresh_members(max_age=1.0)
        # JSONResponse(status_document(...)), built from cached pieces: status is polled.
        body = status_json(self.controller, self.stats)
        return Response(body, headers=_STATUS_HEADERS, media_type=_JSON)

    async def transitions(self, request: Request) -> Response:
        self.auth.require(request.headers.get("authorization"), Role.READER)
        limit = _int_param(request, "limit", *HISTORY_LIMITS) or HISTORY_DEFAULT
        before = _int_param(request, "before", 1, MAX_RECORD_ID)
        records = await self.controller.history(limit, before)
        full_page = len(records) == limit and records[-1].id is not None
        return JSONResponse(
            {
                "transitions": [record.to_dict() for record in records],
                "next_before": records[-1].id if full_page else None,
            },
            headers={"Cache-Control": "no-store"},
        )

    async def fleet(self, request: Request) -> Response:
        """The fleet's instances and its recent records (read from the engine); a service
        without --fleet answers ``{"fleet": null, "records": []}``."""
        self.auth.require(request.headers.get("authorization"), Role.READER)
        limit = _int_param(request, "limit", *HISTORY_LIMITS) or HISTORY_DEFAULT
        controller = self.controller
        if not isinstance(controller, FleetController):  # alone: no fleet, no fleet records
            return JSONResponse(
                {"fleet": None, "records": []}, headers={"Cache-Control": "no-store"}
            )
        await controller.fleet.refresh_members()
        records = await controller.fleet.records(limit)
        return JSONResponse(
            {
                "fleet": fleet_document(controller, self.bypass),
                "records": [record.to_dict() for record in records],
            },
            headers={"Cache-Control": "no-store"},
        )

    async def live(self, request: Request) -> Response:
        return JSONResponse({"status": "live"})

    async def ready(self, request: Request) -> Response:
        """Ready means taking normal traffic: production, no switch under way, no lame duck."""
        state = self.controller.state
        body = {"mode": state.mode.value, "state": state.value}
        if isinstance(self.controller, FleetController):
            # Serving under the last fleet state known; said here so that monitoring sees it.
            body["fleet"] = "lost" if self.controller.fleet.lost is not None else "connected"
        if state is State.PRODUCTION and self.controller.lame_duck_until is None:
            return JSONResponse({"status": "ready", **body})
        retry = str(self.controller.retry_after())
        return JSONResponse(
            {"status": "not ready", **body}, status_code=503, headers={"Retry-After": retry}
        )

    async def openapi(self, request: Request) -> Response:
        return JSONResponse(OPENAPI)

    async def bypass_link(self, request: Request) -> Response:
        return await self.bypass.link(request)

    # -- helpers ---------------------------------------------------------------------------

    async def _read_json_body(self, request: Request) -> bytes:
        """The body, if JSON and small; never reads more than ``max_body`` + one chunk.

        A client that leaves while sending it raises starlette's ClientDisconnect, which the
        route answers as a client gone (:data:`.problems.CLIENT_CLOSED_REQUEST`), not a 500.
        """
        content_type = request.headers.get("content-type")
        media = (content_type or "").partition(";")[0].strip().lower()
        if media != "application/json" and not media.endswith("+json"):
            described = repr(media) if media else "an empty media type"
            if content_type is None:
                described = "a request without Content-Type"
            raise ProblemError(
                Problem.UNSUPPORTED_MEDIA_TYPE,
                f"server mode requests are JSON (Content-Type: application/json), not {described}",
            )
        too_large = ProblemError(
            Problem.PAYLOAD_TOO_LARGE,
            f"the server mode request body is larger than {self.max_body} bytes",
        )
        declared = request.headers.get("content-length")
        if declared is not None and _INTEGER.fullmatch(declared) and int(declared) > self.max_body:
            raise too_large
        body = bytearray()
        try:
            async with asyncio.timeout(self.body_timeout):
                async for chunk in request.stream():
                    body += chunk
                    if len(body) > self.max_body:
                        raise too_large
        except TimeoutError:
            raise ProblemError(
                Problem.REQUEST_TIMEOUT,
                f"the server mode request body did not arrive within {self.body_timeout:g}s",
                {"Connection": "close"},
            ) from None
        return bytes(body)


_JSON = JSONResponse.media_type
_STATUS_HEADERS = {"Cache-Control": "no-store"}


def _parse_mode_request(body: bytes) -> ModeRequest:
    """``{"mode": ..., "reason": ..., "instance": ..., options}`` -> the request; anything else
    is a 400."""
    data = _strict_json(body)
    if not isinstance(data, dict):
        raise ProblemError(
            Problem.BAD_PARAMETER,
            f'bad server mode: expected a JSON object like {{"mode": "maintenance"}}, '
            f"got {_excerpt(body.decode())}",
        )
    if "mode" not in data:
        raise ProblemError(
            Problem.BAD_PARAMETER,
            'missing server mode: expected {"mode": "production"} or {"mode": "maintenance"}',
        )
    try:
        value = data["mode"]
        # Exactly a mode name (any case): no spaces or control characters around it.
        if isinstance(value, str) and not re.fullmatch(MODE_PATTERN, value):
            raise InvalidMode(value)
        mode = parse_mode(value)
    except InvalidMode as exc:
        raise ProblemError.of(exc) from None
    reason = data.get("reason")
    if reason is not None and (
        not isinstance(reason, str) or len(reason) > MAX_REASON or not _plain_text(reason)
    ):
        raise ProblemError(
            Problem.BAD_PARAMETER,
            f"bad reason {_shorten(json.dumps(reason))}: a string of at most {MAX_REASON} "
            f"characters, without control characters",
        )
    instance = data.get("instance")
    if instance is not None and (
        not isinstance(instance, str)
        or not 0 < len(instance) <= MAX_INSTANCE
        or not _plain_text(instance)
    ):
        raise ProblemError(
            Problem.BAD_PARAMETER,
            f"bad instance {_shorten(json.dumps(instance))}: the name of a live instance of "
            f"the fleet, a string of 1 to {MAX_INSTANCE} characters without control characters",
        )
    return ModeRequest(mode.value, reason, instance=instance, **read_options(data))


def _plain_text(text: str) -> bool:
    """No control characters (they forge log lines) and no lone surrogates (not storable)."""
    return not any(unicodedata.category(c) in ("Cc", "Cs") for c in text)


class _NotStrictJson(ValueError):
    """JSON that Python would read but that servermode refuses (the message says why)."""


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # {"mode": "production", "mode": "maintenance"} means one thing to a proxy that keeps the
    # first key and another to json.loads, which keeps the last: refuse the ambiguity.
    data: dict[str, Any] = {}
    for key, value in pairs:
        if key in data:
            raise _NotStrictJson(f"duplicate key {json.dumps(key)}")
        data[key] = value
    return data


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    # json.loads reads 1e999999 as infinity, a value JSON cannot hold (and NaN/Infinity are
    # refused already): refuse the number rather than let an infinity through.
    value = float(text)
    if not math.isfinite(value):
        raise _NotStrictJson(f"the number {_shorten(text, 20)} is out of range")
    return value


def _strict_json(body: bytes) -> Any:
    """The body as JSON: UTF-8, no duplicate keys, no NaN/Infinity, no number out of float's
    range; deep nesting is a 400."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ProblemError(
            Problem.BAD_PARAMETER, "bad server mode: the request body is not UTF-8 text"
        ) from None
    try:
        return json.loads(
            text,
            object_pairs_hook=_no_duplicates,
            parse_constant=_no_constant,
            parse_float=_finite_float,
        )
    except _NotStrictJson as exc:
        raise ProblemError(Problem.BAD_PARAMETER, f"bad server mode request: {exc}") from None
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser goes
        raise ProblemError(
            Problem.BAD_PARAMETER,
            f"bad server mode: the request body is not valid JSON: {_excerpt(text)}",
        ) from None


_INTEGER = re.compile(r"-?[0-9]{1,40}")  # long enough for any bound, short enough to parse


def _int_param(request: Request, name: str, low: int, high: int | None) -> int | None:
    """The integer query parameter ``name`` in [low, high], or None when absent."""
    given = request.query_params.getlist(name)
    if not given:
        return None
    if len(given) > 1:  # which one counts would depend on who reads it: refuse the ambiguity
        raise ProblemError(Problem.BAD_PARAMETER, f"bad {name}: given {len(given)} times")
    raw = given[0]
    # ASCII digits only: str.isdigit() accepts "²", which int() then refuses.
    value = int(raw) if _INTEGER.fullmatch(raw.strip()) else None
    if value is None or value < low or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ProblemError(
            Problem.BAD_PARAMETER, f"bad {name} {_excerpt(raw)}: an integer {bounds}"
        )
    return value


def _shorten(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _excerpt(text: str) -> str:
    """What the client sent, shortened and quoted."""
    return json.dumps(_shorten(text))


def _client(request: Request) -> str | None:
    if request.client is None:
        return None
    return f"{request.client.host}:{request.client.port}"


def _request_id(request: Request) -> str:
    given = request.headers.get("x-request-id", "")
    if given and len(given) <= MAX_REQUEST_ID and given.isprintable() and given.isascii():
        return given
    return uuid.uuid4().hex


def admin_routes(
    controller: ModeController,
    *,
    auth: TokenAuth | None = None,
    stats: RequestStats | None = None,
    max_body: int = DEFAULT_MAX_BODY,
    body_timeout: float = DEFAULT_BODY_TIMEOUT,
    bypass: Bypass | None = None,
) -> list[BaseRoute]:
    """The admin routes, to add to any Starlette (or FastAPI) application's routes."""
    return AdminRoutes(
        controller,
        auth=auth,
        stats=stats,
        max_body=max_body,
        body_timeout=body_timeout,
        bypass=bypass,
    ).routes()


def admin_app(
    controller: ModeController,
    *,
    auth: TokenAuth | None = None,
    stats: RequestStats | None = None,
    max_body: int = DEFAULT_MAX_BODY,
    body_timeout: float = DEFAULT_BODY_TIMEOUT,
    bypass: Bypass | None = None,
) -> Starlette:
    """The admin routes as an application whose 404, 405 and 500 also use the error body."""
    routes = admin_routes(
        controller,
        auth=auth,
        stats=stats,
        max_body=max_body,
        body_timeout=body_timeout,
        bypass=bypass,
    )
    return Starlette(routes=routes, exception_handlers=ERROR_HANDLERS)
