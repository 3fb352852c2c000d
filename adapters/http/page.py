"""Browsers get a page, APIs keep JSON: the answer to a request the mode refuses.

A refused request whose ``Accept`` prefers ``text/html`` to ``application/json`` (a browser's
does; ``*/*``, curl's, does not) gets an HTML maintenance page; every other one keeps the
Context Services error body. Both are 503 with ``Retry-After`` and ``Vary: Accept``.

The page is the default below (what is happening, why if a reason was given, when to retry;
no script, no external resource, and a Content-Security-Policy that allows none), or the
operator's template file, filled in with :class:`string.Template` from :data:`PLACEHOLDERS`
(every value HTML-escaped).

``Accept`` is read only here, on the refusal path: admitted requests never parse it.
"""

from __future__ import annotations

import functools
import html
import math
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from servermode.core import Refused, ServerModeError
from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import Message, Scope, Send

from .problems import problem_for_exception, problem_response, send_problem

__all__ = ["PLACEHOLDERS", "MaintenancePage", "Refusal", "RefusalAnswers", "prefers_html"]

#: What a template may use: ``$mode`` (in force), ``$state``, ``$category`` (of the refused
#: request), ``$description`` (the error body's), ``$reason`` (empty when none was given),
#: ``$retry_after`` (seconds), ``$retry_at`` and ``$until`` (UTC times; ``$until`` is the end of
#: a maintenance window, empty when there is none).
PLACEHOLDERS = frozenset(
    {"mode", "state", "category", "description", "reason", "retry_after", "retry_at", "until"}
)
#: Only the first this many characters of an ``Accept`` header are read.
MAX_ACCEPT = 2048

_HTML_TYPES = ("text/html", "application/xhtml+xml")
_CSP = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"

DEFAULT_TEMPLATE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>$heading</title>
<style>
body { font-family: system-ui, sans-serif; max-width: 36rem; margin: 4rem auto;
       padding: 0 1rem; color: #222; line-height: 1.5; }
h1 { font-size: 1.6rem; }
.why { padding: .75rem 1rem; background: #f4f4f4; border-left: 4px solid #888; }
</style>
</head>
<body>
<h1>$heading</h1>
<p>$what</p>
$why<p>Please try again in $retry_words (after $retry_at).</p>
$until_line</body>
</html>
"""


def prefers_html(accept: str | None) -> bool:
    """Whether ``accept`` ranks an HTML type strictly above JSON (a tie keeps JSON)."""
    if not accept:
        return False
    ranked_html = ranked_json = (-1, 0.0)  # (specificity of the matching range, its q)
    for part in accept[:MAX_ACCEPT].split(","):
        media, _, parameters = part.partition(";")
        media = media.strip().lower()
        q = _quality(parameters)
        for kind in _HTML_TYPES:
            ranked_html = max(ranked_html, (_specificity(media, kind), q))
        ranked_json = max(ranked_json, (_specificity(media, "application/json"), q))
    html_q = ranked_html[1] if ranked_html[0] >= 0 else 0.0
    json_q = ranked_json[1] if ranked_json[0] >= 0 else 0.0
    return html_q > json_q


def _specificity(media: str, kind: str) -> int:
    """How closely the range ``media`` matches ``kind``: 2 exactly, 1 type/*, 0 */*, -1 not."""
    if media == kind:
        return 2
    if media == kind.split("/")[0] + "/*":
        return 1
    return 0 if media == "*/*" else -1


def _quality(parameters: str) -> float:
    for parameter in parameters.split(";"):
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "q":
            try:
                q = float(value.strip())
            except ValueError:
                return 0.0
            return q if 0.0 <= q <= 1.0 else 0.0
    return 1.0


@dataclass(frozen=True, slots=True)
class Refusal:
    """The facts a maintenance page shows."""

    mode: str
    state: str
    category: str
    description: str
    reason: str | None
    retry_after: int
    until: datetime | None = None


class MaintenancePage:
    """Renders the page: the default, or ``template`` (see :data:`PLACEHOLDERS`)."""

    def __init__(self, template: str | None = None) -> None:
        if template is not None:
            unknown = set(string.Template(template).get_identifiers()) - PLACEHOLDERS
            if unknown or not string.Template(template).is_valid():
                named = ", ".join(sorted(f"${name}" for name in unknown)) or "a stray $"
                raise ValueError(
                    f"the maintenance page template uses {named}; it may use "
                    f"{', '.join(sorted('$' + p for p in PLACEHOLDERS))} (write $$ for a $)"
                )
        self.template = template

    @classmethod
    def from_file(cls, path: str) -> MaintenancePage:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"cannot read the maintenance page {path}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise ValueError(f"the maintenance page {path} is not UTF-8 text") from None
        try:
            return cls(text)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None

    def render(self, refusal: Refusal, now: datetime | None = None) -> str:
        now = now or datetime.now(UTC)
        retry_at = now + timedelta(seconds=refusal.retry_after)
        if refusal.until is not None and now < refusal.until < retry_at:
            retry_at = refusal.until  # the window's end, not its end rounded up to a second
        values = {
            "mode": refusal.mode,
            "state": refusal.state,
            "category": refusal.category,
            "description": refusal.description,
            "reason": refusal.reason or "",
            "retry_after": str(refusal.retry_after),
            "retry_at": _format(retry_at),
            "until": _format(refusal.until) if refusal.until is not None else "",
        }
        escaped = {name: html.escape(value) for name, value in values.items()}
        if self.template is not None:
            return string.Template(self.template).substitute(escaped)
        return string.Template(DEFAULT_TEMPLATE).substitute(_default_parts(refusal, escaped))


def _default_parts(refusal: Refusal, escaped: Mapping[str, str]) -> dict[str, str]:
    switching = refusal.state != refusal.mode
    if refusal.mode == "maintenance" and not switching:
        heading = "Down for maintenance"
        what = "This service is down for maintenance at the moment."
    elif switching:
        heading = "Briefly unavailable"
        what = "This service is switching modes and will be back shortly."
    else:
        heading = "Temporarily unavailable"
        what = f"This is unavailable while the service is in {escaped['mode']} mode."
    why = f'<p class="why">{escaped["reason"]}</p>\n' if refusal.reason else ""
    until = (
        f"<p>The maintenance window ends at {escaped['until']}.</p>\n"
        if refusal.until is not None
        else ""
    )
    return {
        "heading": heading,
        "what": what,
        "why": why,
        "retry_words": _seconds(refusal.retry_after),
        "retry_at": escaped["retry_at"],
        "until_line": until,
    }


def _seconds(n: int) -> str:
    if n < 120:
        return f"{n} second{'s' if n != 1 else ''}"
    minutes = math.ceil(n / 60)
    return f"{minutes} minutes"


def _format(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


class RefusalAnswers:
    """The answer to a request the gate refused: the page for browsers, the error body else.

    ``facts`` gives what the page shows beyond the refusal itself: the reason given for the
    mode and the end of a maintenance window (read only when a page is sent).
    """

    def __init__(
        self,
        page: MaintenancePage | None,
        facts: Callable[[], tuple[str | None, datetime | None]],
    ) -> None:
        self.page = page
        self._facts = facts

    def response(self, scope: Scope, exc: ServerModeError) -> Response:
        problem, description, headers = problem_for_exception(exc)
        if isinstance(exc, Refused):
            headers["Vary"] = "Accept"
            if self.page is not None and prefers_html(Headers(scope=scope).get("accept")):
                reason, until = self._facts()
                refusal = Refusal(
                    mode=exc.state.mode.value,
                    state=exc.state.value,
                    category=exc.category,
                    description=description,
                    reason=reason,
                    retry_after=exc.retry_after,
                    until=until,
                )
                return Response(
                    self.page.render(refusal),
                    status_code=problem.status,
                    media_type="text/html; charset=utf-8",
                    headers={
                        **headers,
                        "Cache-Control": "no-store",
                        "Content-Security-Policy": _CSP,
                    },
                )
        return problem_response(scope, problem, description, headers)

    async def send(self, scope: Scope, send: Send, exc: ServerModeError) -> int:
        """Send :meth:`response`'s answer; return its status.

        The gate's refusals come here: a hot path during every drain. A client that does not
        prefer HTML gets the error body sent directly (:func:`.problems.send_problem`: the same
        bytes, no Response built); whether it prefers HTML is read from its Accept header,
        decided once per distinct header.
        """
        accept = _accept(scope)
        if self.page is not None and isinstance(exc, Refused) and _prefers_html(accept):
            response = self.response(scope, exc)
            await response(scope, _nothing_to_receive, send)
            return response.status_code
        problem, description, headers = problem_for_exception(exc)
        if isinstance(exc, Refused):
            headers["Vary"] = "Accept"
        await send_problem(scope, send, problem, description, headers)
        return problem.status


def _accept(scope: Scope) -> str | None:
    """The Accept header as Starlette's ``Headers.get`` reads it, cut where prefers_html stops
    reading (so that the cache's keys stay short)."""
    for key, value in scope["headers"]:
        if key == b"accept":
            return str(value[:MAX_ACCEPT].decode("latin-1"))
    return None


@functools.lru_cache(maxsize=256)
def _prefers_html(accept: str | None) -> bool:
    # Clients send few distinct Accept headers: parse each once.
    return prefers_html(accept)


async def _nothing_to_receive() -> Message:
    raise RuntimeError("an error answer does not read the request")
