"""Monitoring routes: metrics, the event stream, the admin page, and cancelling a drain.

| route                  | token        | what                                                   |
|------------------------|--------------|--------------------------------------------------------|
| GET /server/metrics    | read (or admin) | Prometheus text (:mod:`.metrics`)                   |
| GET /server/events     | read (or admin) | server-sent events (:mod:`.events`)                 |
| POST /server/cancel    | admin        | abandon the drain under way; the record, or 409        |
| GET /server/ui (+ files) | none       | the admin page (:mod:`.ui`): static, asks for a token  |

One :class:`Monitor` per controller (:func:`monitor_for`) holds what the routes read: the
transition tally, the event hub, the metrics registry. It follows the controller's audit feed
(:class:`.feed.AuditFeed`) for transition records and its drain listener for drain starts.
"""

from __future__ import annotations

import asyncio
import json
import unicodedata
import weakref
from typing import Any

from servermode.core import ModeController, TransitionRecord
from servermode.core.fleet import FleetController
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from .auth import Role, TokenAuth
from .events import EVENT_STREAM_HEADERS, EventHub
from .feed import AuditFeed
from .metrics import TransitionTally, exposition, metrics_registry
from .problems import Problem, ProblemError, answering_problems
from .routes import CANCEL_PATH, EVENTS_PATH, METRICS_PATH
from .stats import RequestStats, stats_for
from .status import status_document
from .ui import UiAssets

__all__ = ["CANCEL_MAX_BODY", "Monitor", "MonitoringRoutes", "monitor_for", "monitoring_routes"]

#: The largest ``POST /server/cancel`` body read (bytes), and the longest reason in it.
CANCEL_MAX_BODY = 1024
MAX_REASON = 500
#: Seconds the cancel request body may take to arrive.
CANCEL_BODY_TIMEOUT = 10.0


class Monitor:
    """What the monitoring routes read for one controller.

    It keeps only a weak reference to the controller (the registry of :func:`monitor_for`
    must not keep controllers alive); the controller holds the monitor through its drain
    listener and its audit feed.
    """

    def __init__(
        self,
        controller: ModeController,
        feed: AuditFeed | None = None,
        *,
        process_metrics: bool = True,
    ) -> None:
        self.tally = TransitionTally()
        self.hub = EventHub()
        self.registry = metrics_registry(controller, self.tally, process=process_metrics)
        self._feeds: list[AuditFeed] = []
        controller.add_drain_listener(self.hub.wake)
        if feed is not None:
            self.follow(feed)

    def follow(self, feed: AuditFeed) -> None:
        """Tally and stream every record ``feed`` publishes (once per feed)."""
        if any(known is feed for known in self._feeds):
            return
        self._feeds.append(feed)
        feed.subscribe(self.observe)

    def observe(self, record: TransitionRecord) -> None:
        self.tally.observe(record)
        self.hub.publish(record)

    def close(self) -> None:
        """End the open event streams: call it when the server begins to stop."""
        self.hub.close()


_MONITORS: weakref.WeakKeyDictionary[ModeController, Monitor] = weakref.WeakKeyDictionary()


def monitor_for(controller: ModeController, feed: AuditFeed | None = None) -> Monitor:
    """The monitor of ``controller`` (made at the first call); it follows ``feed`` when given.

    Transition metrics and records on the event stream need the feed: build the controller
    with ``audit=feed`` and pass the same feed here.
    """
    monitor = _MONITORS.get(controller)
    if monitor is None:
        monitor = _MONITORS[controller] = Monitor(controller)
    if feed is not None:
        monitor.follow(feed)
    return monitor


class MonitoringRoutes:
    """The monitoring endpoints over one controller, with the admin routes' token rules."""

    def __init__(
        self,
        controller: ModeController,
        *,
        auth: TokenAuth | None = None,
        stats: RequestStats | None = None,
    ) -> None:
        self.controller = controller
        self.auth = auth if auth is not None else TokenAuth()
        self.stats = stats if stats is not None else stats_for(controller)
        self.monitor = monitor_for(controller)
        self.ui = UiAssets()

    def routes(self) -> list[BaseRoute]:
        endpoints = [
            (METRICS_PATH, self.metrics, "GET"),
            (EVENTS_PATH, self.events, "GET"),
            (CANCEL_PATH, self.cancel, "POST"),
        ]
        return [
            *(
                Route(path, answering_problems(endpoint), methods=[method])
                for path, endpoint, method in endpoints
            ),
            *(Route(path, self.ui.endpoint(path), methods=["GET"]) for path in self.ui.paths),
        ]

    async def metrics(self, request: Request) -> Response:
        self.auth.require(request.headers.get("authorization"), Role.READER)
        controller = self.controller
        if isinstance(controller, FleetController):
            # The fleet gauges read the instances as last listed; at most a second old (the
            # status document's rule), so that scrapes do not each read every heartbeat.
            await controller.fleet.refresh_members(max_age=1.0)
        body, content_type = exposition(self.monitor.registry, request.headers.get("accept"))
        return Response(body, headers={"Content-Type": content_type, "Cache-Control": "no-store"})

    async def events(self, request: Request) -> Response:
        authorization = request.headers.get("authorization")
        principal = self.auth.require(authorization, Role.READER)
        try:
            principal = self.auth.require(authorization, Role.ADMIN)
            refusal = None
        except ProblemError as refused:  # not a failure: the stream says what the token may do
            refusal = refused.description
        # Tells the page what its token may do, so that it can say so before a switch fails.
        hello = {"principal": principal.name, "can_switch": refusal is None, "switch": refusal}
        stream = self.monitor.hub.stream(hello, self._status)
        return StreamingResponse(
            stream, media_type="text/event-stream", headers=EVENT_STREAM_HEADERS
        )

    def _status(self) -> dict[str, Any]:
        return status_document(self.controller, self.stats)

    async def cancel(self, request: Request) -> Response:
        principal = self.auth.require(request.headers.get("authorization"), Role.ADMIN)
        reason = _parse_cancel(await _read_body(request))
        record = await self.controller.cancel(actor=principal.name, reason=reason)
        if record is None:
            raise ProblemError(
                Problem.NOTHING_TO_CANCEL,
                f"no mode change is under way and no maintenance window is set: the server is "
                f"in {self.controller.mode} mode",
            )
        return JSONResponse(
            record.to_dict(),
            headers={"Servermode-Outcome": record.outcome.value, "Cache-Control": "no-store"},
        )


def monitoring_routes(
    controller: ModeController,
    *,
    auth: TokenAuth | None = None,
    stats: RequestStats | None = None,
) -> list[BaseRoute]:
    """The monitoring routes, to add beside the admin routes (``admin_routes`` includes them)."""
    return MonitoringRoutes(controller, auth=auth, stats=stats).routes()


async def _read_body(request: Request) -> bytes:
    """The cancel request's body: none, or JSON of at most :data:`CANCEL_MAX_BODY` bytes."""
    content_type = request.headers.get("content-type")
    body = bytearray()
    try:
        async with asyncio.timeout(CANCEL_BODY_TIMEOUT):
            async for chunk in request.stream():
                body += chunk
                if len(body) > CANCEL_MAX_BODY:
                    raise ProblemError(
                        Problem.PAYLOAD_TOO_LARGE,
                        f"the cancel request body is larger than {CANCEL_MAX_BODY} bytes",
                    )
    except TimeoutError:
        raise ProblemError(
            Problem.REQUEST_TIMEOUT,
            f"the cancel request body did not arrive within {CANCEL_BODY_TIMEOUT:g}s",
        ) from None
    if body:
        media = (content_type or "").partition(";")[0].strip().lower()
        if media != "application/json" and not media.endswith("+json"):
            raise ProblemError(
                Problem.UNSUPPORTED_MEDIA_TYPE,
                f"a cancel request body is JSON (Content-Type: application/json), "
                f"not {media or 'without a media type'!r}",
            )
    return bytes(body)


def _parse_cancel(body: bytes) -> str | None:
    """The reason of ``{"reason": "..."}`` (or no body at all); anything else is a 400."""
    if not body.strip():
        return None
    try:
        data = json.loads(body.decode("utf-8"), parse_constant=_no_constant)
    except (ValueError, RecursionError):
        data = None
    if not isinstance(data, dict) or set(data) - {"reason"}:
        raise ProblemError(
            Problem.BAD_PARAMETER,
            'bad cancel request: expected no body or a JSON object like {"reason": "..."}',
        )
    reason = data.get("reason")
    if reason is not None and (
        not isinstance(reason, str) or len(reason) > MAX_REASON or not _plain_text(reason)
    ):
        raise ProblemError(
            Problem.BAD_PARAMETER,
            f"bad reason: a string of at most {MAX_REASON} characters, without control characters",
        )
    return reason


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _plain_text(text: str) -> bool:
    """No control characters (they forge log lines) and no lone surrogates (not storable)."""
    return not any(unicodedata.category(c) in ("Cc", "Cs") for c in text)
