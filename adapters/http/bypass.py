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
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import urllib.parse
from collections.abc import Iterable
from enum import StrEnum

import structlog
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


class Bypass:
    """Who may pass a refusing gate: a secret, its cookie, or an allowed address.

    Parameters:
        secret: the bypass secret (printable ASCII, at least 16 characters), or None.
        allow: client networks let through.
        trusted_proxies: peers whose ``Forwarded`` / ``X-Forwarded-For`` headers are believed.
    """

    __slots__ = ("_cookie", "_secret", "allow", "cookie_value", "trusted_proxies")

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
        self._secret = _digest(secret) if secret is not None else None
        # The cookie holds an HMAC of the secret: a cookie that leaks does not tell the secret.
        self.cookie_value = (
            hmac.new(secret.encode(), b"servermode bypass cookie", "sha256").hexdigest()
            if secret is not None
            else None
        )
        self._cookie = _digest(self.cookie_value) if self.cookie_value is not None else None
        self.allow = tuple(allow)
        self.trusted_proxies = tuple(trusted_proxies)

    @property
    def enabled(self) -> bool:
        return self._secret is not None or bool(self.allow)

    def __repr__(self) -> str:
        return (
            f"Bypass(secret={self._secret is not None}, allow={len(self.allow)}, "
            f"trusted_proxies={len(self.trusted_proxies)})"
        )

    # -- who passes ------------------------------------------------------------------------

    def allows(self, scope: Scope) -> BypassBy | None:
        """How the request of ``scope`` may pass a refusing gate, or None."""
        headers = Headers(scope=scope)
        if self._secret is not None:
            presented = headers.get(BYPASS_HEADER)
            if presented is not None and hmac.compare_digest(_digest(presented), self._secret):
                return BypassBy.SECRET
            cookie = _cookie(headers.get("cookie"))
            if cookie is not None and hmac.compare_digest(
                _digest(cookie),
                self._cookie,  # type: ignore[arg-type]  # set with the secret
            ):
                return BypassBy.COOKIE
        if self.allow:
            client = self.client_address(scope, headers)
            if client is not None and any(client in network for network in self.allow):
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
        if self._secret is None:
            raise ProblemError(Problem.NOT_FOUND, "no bypass secret is configured")
        presented = request.query_params.get("secret", "")
        target = request.query_params.get("next", "/")
        # Blanked in place: the ASGI server's access log reads this very scope after we answer.
        request.scope["query_string"] = b"secret=[hidden]"
        if not hmac.compare_digest(_digest(presented), self._secret):
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
            f"{BYPASS_COOKIE}={self.cookie_value}; Path=/; Max-Age={COOKIE_AGE}; HttpOnly; "
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
