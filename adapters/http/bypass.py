"""Bypass: named callers let through a mode that refuses their category.

To check a system in maintenance before reopening it, an operator may pass the gate with

- the bypass secret in a header (``Servermode-Bypass: <secret>``),
- the cookie a browser gets from the bypass link (``GET /server/bypass?secret=<secret>``, as
  Laravel's ``artisan down --secret`` does): an HMAC of the secret, never the secret itself,
- or a client address in the allowlist (CIDRs).

The client address is the TCP peer's, unless the peer is one of the trusted proxies the
operator lists: then it is read from ``Forwarded`` (RFC 7239) or else ``X-Forwarded-For``,
right to left, skipping trusted proxies; the first address not trusted is the client. A
forwarded header from a peer that is not a trusted proxy is ignored, so no one can claim an
allowed address by writing it in a header. (When uvicorn's own proxy handling is on, the peer
seen here is the one uvicorn derived, from the proxies uvicorn was told to trust.)

The secret is kept as a SHA-256 digest and compared with :func:`hmac.compare_digest`, like the
tokens, and never logged: the link's query string is blanked before the access log writes it,
and uvicorn's access and ASGI trace loggers (the trace level prints every request's scope, its
query string included, before any application runs) get a filter that hides it
(:func:`hide_in_logs`). Everything else here runs only for requests the gate refused.

In a fleet the bypass is the fleet's (:mod:`servermode.core.fleet.bypass`): :meth:`Bypass.follow`
swaps who passes (secret digest, cookie digest, allowlist: one value, replaced whole) for the
fleet's; the link then derives the cookie from the secret presented once its digest matches,
and any presented link secret is hidden from the server's logs
(:func:`hide_presented_secrets`), since it may be one this instance was never given.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import re
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

import structlog
from servermode.core.fleet import FleetBypass
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Scope

from .problems import Problem, ProblemError

__all__ = [
    "BYPASS_COOKIE",
    "BYPASS_HEADER",
    "Bypass",
    "BypassBy",
    "hide_in_logs",
    "hide_presented_secrets",
    "parse_networks",
]

BYPASS_HEADER = "servermode-bypass"
BYPASS_COOKIE = "servermode_bypass"
#: Seconds the bypass cookie lasts (12 hours).
COOKIE_AGE = 12 * 3600
MIN_SECRET = 16
#: The most forwarded hops read: a longer chain is not believed.
MAX_HOPS = 20

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

_log = structlog.get_logger("servermode.http")


class BypassBy(StrEnum):
    """How a request was let through."""

    SECRET = "secret"
    COOKIE = "cookie"
    ADDRESS = "address"


def parse_networks(text: str | Iterable[str] | None, what: str) -> tuple[Network, ...]:
    """CIDRs (comma-separated, or a list): ``10.0.0.0/8, 192.0.2.7, ::1``; ValueError if bad."""
    if text is None:
        return ()
    items = text.split(",") if isinstance(text, str) else list(text)
    networks = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"{what}: {item!r} is not an IP address or CIDR network") from None
    return tuple(networks)


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("latin-1", "replace")).digest()


def _cookie_for(secret: str) -> str:
    """The cookie value of ``secret``: an HMAC, so that a cookie that leaks does not tell it."""
    return hmac.new(secret.encode(), b"servermode bypass cookie", "sha256").hexdigest()


@dataclass(frozen=True, slots=True)
class _Rule:
    """Who passes, as one value: swapped whole when the fleet's bypass changes."""

    secret: bytes | None = None  # SHA-256 of the secret
    cookie: bytes | None = None  # SHA-256 of the cookie value
    allow: tuple[Network, ...] = ()
    fleet: FleetBypass | None = None  # the fleet's bypass it was made from, in fleet mode

    @property
    def enabled(self) -> bool:
        return self.secret is not None or bool(self.allow)


class Bypass:
    """Who may pass a refusing gate: a secret, its cookie, or an allowed address.

    Parameters:
        secret: the bypass secret (printable ASCII, at least 16 characters), or None.
        allow: client networks let through.
        trusted_proxies: peers whose ``Forwarded`` / ``X-Forwarded-For`` headers are believed.

    In a fleet, :meth:`follow` replaces who passes (the secret, the cookie, the allowlist) by
    the fleet's bypass, all at once; the trusted proxies stay this instance's own.
    """

    __slots__ = ("_own", "_rule", "cookie_value", "trusted_proxies")

    def __init__(
        self,
        secret: str | None = None,
        allow: Iterable[Network] = (),
        trusted_proxies: Iterable[Network] = (),
    ) -> None:
        if secret is not None:
            if not (secret.isascii() and secret.isprintable()) or secret != secret.strip():
                raise ValueError(
                    "the bypass secret must be printable ASCII without spaces around it: it is "
                    "sent in a header and a URL, where other characters do not arrive as written"
                )
            if len(secret) < MIN_SECRET:
                raise ValueError(
                    f"the bypass secret must have at least {MIN_SECRET} characters: a short one "
                    "can be guessed"
                )
        #: The cookie value of the secret configured here (None without one).
        self.cookie_value = _cookie_for(secret) if secret is not None else None
        self._own = _Rule(
            secret=_digest(secret) if secret is not None else None,
            cookie=_digest(self.cookie_value) if self.cookie_value is not None else None,
            allow=tuple(allow),
        )
        # Read once per check (a check never sees half of a swap): replaced whole by follow().
        self._rule = self._own
        self.trusted_proxies = tuple(trusted_proxies)

    @property
    def enabled(self) -> bool:
        return self._rule.enabled

    @property
    def has_secret(self) -> bool:
        return self._rule.secret is not None

    @property
    def allow(self) -> tuple[Network, ...]:
        return self._rule.allow

    @property
    def fleet(self) -> FleetBypass | None:
        """The fleet's bypass honoured here (None: this instance's own, as configured)."""
        return self._rule.fleet

    def __repr__(self) -> str:
        return (
            f"Bypass(secret={self._rule.secret is not None}, allow={len(self._rule.allow)}, "
            f"trusted_proxies={len(self.trusted_proxies)})"
        )

    # -- in a fleet ------------------------------------------------------------------------

    def published(self, instance: str, at: float) -> FleetBypass:
        """This instance's configured bypass as the fleet keeps it: digests, never the secret."""
        own = self._own
        return FleetBypass(
            secret_sha256=own.secret.hex() if own.secret is not None else None,
            cookie_sha256=own.cookie.hex() if own.cookie is not None else None,
            allow=tuple(str(network) for network in own.allow),
            published_by=instance,
            published_at=at,
        )

    def follow(self, fleet: FleetBypass) -> None:
        """Honour the fleet's bypass from now on; ValueError (and no change) if unusable."""
        self._rule = _Rule(
            secret=bytes.fromhex(fleet.secret_sha256) if fleet.secret_sha256 else None,
            cookie=bytes.fromhex(fleet.cookie_sha256) if fleet.cookie_sha256 else None,
            allow=parse_networks(fleet.allow, f"the fleet bypass of {fleet.published_by}"),
            fleet=fleet,
        )

    # -- who passes ------------------------------------------------------------------------

    def allows(self, scope: Scope) -> BypassBy | None:
        """How the request of ``scope`` may pass a refusing gate, or None."""
        rule = self._rule
        if not rule.enabled:
            return None
        headers = Headers(scope=scope)
        if rule.secret is not None:
            presented = headers.get(BYPASS_HEADER)
            if presented is not None and hmac.compare_digest(_digest(presented), rule.secret):
                return BypassBy.SECRET
            cookie = _cookie(headers.get("cookie"))
            if (
                cookie is not None
                and rule.cookie is not None
                and hmac.compare_digest(_digest(cookie), rule.cookie)
            ):
                return BypassBy.COOKIE
        if rule.allow:
            client = self.client_address(scope, headers)
            if client is not None and any(client in network for network in rule.allow):
                return BypassBy.ADDRESS
        return None

    def client_address(self, scope: Scope, headers: Headers | None = None) -> Address | None:
        """The client's address: the peer's, or what trusted proxies say they forwarded."""
        peer = scope.get("client")
        address = _address(peer[0]) if peer else None
        if address is None or not self._trusted(address):
            return address
        headers = headers if headers is not None else Headers(scope=scope)
        forwarded = headers.getlist("forwarded")
        hops = _forwarded_for(forwarded) if forwarded else _x_forwarded_for(headers)
        if hops is None or len(hops) > MAX_HOPS:
            return None
        for hop in reversed(hops):
            hop_address = _address(hop)
            if hop_address is None:
                return None  # "unknown", obfuscated or garbage: no one to believe further
            if not self._trusted(hop_address):
                return hop_address
            address = hop_address
        return address

    def _trusted(self, address: Address) -> bool:
        return any(address in network for network in self.trusted_proxies)

    # -- the link that sets the cookie -----------------------------------------------------

    async def link(self, request: Request) -> Response:
        """``GET /server/bypass?secret=...``: set the bypass cookie and go to ``next`` (or /)."""
        secret = self._rule.secret
        if secret is None:
            raise ProblemError(Problem.NOT_FOUND, "no bypass secret is configured")
        presented = request.query_params.get("secret", "")
        target = request.query_params.get("next", "/")
        # Blanked in place: the ASGI server's access log reads this very scope after we answer.
        request.scope["query_string"] = b"secret=[hidden]"
        if not hmac.compare_digest(_digest(presented), secret):
            client = request.client
            _log.warning(
                "bypass_link_refused",
                client=f"{client.host}:{client.port}" if client is not None else None,
            )
            raise ProblemError(Problem.FORBIDDEN, "wrong bypass secret")
        if not target.startswith("/") or target.startswith("//") or "\\" in target:
            target = "/"  # only a path of this site: the link is no open redirect
        secure = "; Secure" if request.url.scheme in ("https", "wss") else ""
        cookie = (
            f"{BYPASS_COOKIE}={_cookie_for(presented)}; Path=/; Max-Age={COOKIE_AGE}; HttpOnly; "
            f"SameSite=Lax{secure}"
        )
        return Response(
            status_code=303,
            headers={
                "Location": target,
                "Set-Cookie": cookie,
                "Cache-Control": "no-store",
                "Referrer-Policy": "no-referrer",
            },
        )


#: The loggers of the ASGI server that print request lines or scopes.
SERVER_LOGGERS = ("uvicorn.access", "uvicorn.asgi", "uvicorn.error")
HIDDEN = "[hidden]"


class _Hide(logging.Filter):
    """Rewrites a log record that contains one of ``words`` with each of them hidden."""

    def __init__(self, words: Iterable[str]) -> None:
        super().__init__()
        self.words = tuple(sorted(set(words), key=len, reverse=True))

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a record that cannot be formatted is the handler's problem
            return True
        if any(word in message for word in self.words):
            for word in self.words:
                message = message.replace(word, HIDDEN)
            record.msg, record.args = message, ()
        return True


_hidden: set[str] = set()


def hide_in_logs(secret: str, loggers: Iterable[str] = SERVER_LOGGERS) -> None:
    """Hide ``secret`` (as written and URL-encoded) from what ``loggers`` write; once each."""
    if secret in _hidden:
        return
    _hidden.add(secret)
    words = {secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret)}
    for name in loggers:
        logging.getLogger(name).addFilter(_Hide(words))


#: Where a presented secret shows in what the server logs: the link's query string (the
#: request line, and the scope printed at the trace level; uvicorn prints no header values).
_PRESENTED = re.compile(r"(secret=)[^&\s'\"]+")


class _HidePresented(logging.Filter):
    """Rewrites a log record where a secret may be presented, whatever the secret is."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # as in _Hide
            return True
        hidden = _PRESENTED.sub(rf"\g<1>{HIDDEN}", message)
        if hidden != message:
            record.msg, record.args = hidden, ()
        return True


_hiding_presented = False


def hide_presented_secrets(loggers: Iterable[str] = SERVER_LOGGERS) -> None:
    """Hide any secret presented to the link from what ``loggers`` write.

    For an instance of a fleet: the fleet's secret may be one this instance was never given
    (another instance published it), so it cannot be hidden as a word. Once per process.
    """
    global _hiding_presented
    if _hiding_presented:
        return
    _hiding_presented = True
    for name in loggers:
        logging.getLogger(name).addFilter(_HidePresented())


def _forwarded_for(values: list[str]) -> list[str] | None:
    """The ``for=`` of each element of ``Forwarded`` headers; None if one has none."""
    hops = []
    for element in ",".join(values).split(","):
        for pair in element.split(";"):
            name, _, value = pair.partition("=")
            if name.strip().lower() == "for":
                hops.append(value.strip().strip('"'))
                break
        else:
            return None
    return hops


def _x_forwarded_for(headers: Headers) -> list[str]:
    hops = (hop.strip() for hop in ",".join(headers.getlist("x-forwarded-for")).split(","))
    return [hop for hop in hops if hop]


def _cookie(header: str | None) -> str | None:
    if not header:
        return None
    for part in header.split(";"):
        name, _, value = part.strip().partition("=")
        if name == BYPASS_COOKIE:
            return value.strip('"')
    return None


def _address(text: str) -> Address | None:
    """An address from a peer or a forwarded hop (``1.2.3.4``, ``1.2.3.4:80``, ``[::1]:80``)."""
    text = text.strip()
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None
