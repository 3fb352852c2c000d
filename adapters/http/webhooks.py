"""Webhooks: every transition record POSTed as JSON to the operator's URLs, signed.

Each delivery is ``POST <url>`` with the record (:meth:`TransitionRecord.to_dict`) as its JSON
body and these headers:

- ``Servermode-Signature: sha256=<hex>``: HMAC-SHA256, keyed with the webhook secret, of
  ``<timestamp>.<body>``; the receiver recomputes it (and compares in constant time) to know
  the record came from this service, and checks the timestamp to refuse replays;
- ``Servermode-Timestamp``: seconds since the epoch when it was signed;
- ``Servermode-Delivery``: one id per record and URL, the same across retries (deduplicate
  on it); ``Servermode-Event: mode_transition``;
- ``Servermode-Instance``: in fleet mode, the instance whose record it is (each instance of a
  fleet sends its own record of a fleet switch; their ``fleet.epoch`` is the same).

A delivery that fails (no connection, a timeout, an answer other than 2xx) is retried with
exponential backoff, up to ``attempts`` times, then logged as undelivered. Nothing here blocks
a switch: the sender is a controller subscriber, and deliveries run in the background on
their own threads. The secret is never logged.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

import structlog
from servermode.core import TransitionRecord

__all__ = ["SIGNATURE_HEADER", "Webhooks", "parse_urls", "sign"]

SIGNATURE_HEADER = "Servermode-Signature"
TIMESTAMP_HEADER = "Servermode-Timestamp"
INSTANCE_HEADER = "Servermode-Instance"
MIN_SECRET = 16

_log = structlog.get_logger("servermode.webhooks")


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The signature header's value for ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def parse_urls(text: str | Iterable[str] | None) -> tuple[str, ...]:
    """Webhook URLs (comma-separated, or a list): http or https with a host; ValueError else."""
    if text is None:
        return ()
    items = text.split(",") if isinstance(text, str) else list(text)
    urls = []
    for url in (item.strip() for item in items):
        if not url:
            continue
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"webhook {url!r}: an http:// or https:// URL with a host")
        urls.append(url)
    return tuple(urls)


class Webhooks:
    """A controller subscriber that POSTs each record to ``urls``, signed with ``secret``.

    Parameters:
        urls: where to send.
        secret: the HMAC key (at least 16 characters).
        attempts: tries per record and URL (the first included).
        backoff: seconds before the first retry; doubled before each next one.
        timeout: seconds one attempt may take.
        instance: the instance of a fleet that sends (its ``Servermode-Instance`` header).
    """

    def __init__(
        self,
        urls: Iterable[str],
        secret: str,
        *,
        attempts: int = 5,
        backoff: float = 0.5,
        timeout: float = 5.0,
        clock: Callable[[], float] = time.time,
        instance: str | None = None,
    ) -> None:
        self.urls = parse_urls(list(urls))
        self.instance = instance
        if len(secret) < MIN_SECRET or secret != secret.strip():
            raise ValueError(
                f"the webhook secret must have at least {MIN_SECRET} characters, without "
                "spaces around it"
            )
        if not 1 <= attempts <= 20 or not 0 <= backoff <= 60 or not 0 < timeout <= 60:
            raise ValueError("webhook attempts 1..20, backoff 0..60 s, timeout over 0 to 60 s")
        self._secret = secret.encode()
        self.attempts = attempts
        self.backoff = backoff
        self.timeout = timeout
        self._clock = clock
        self._pool = ThreadPoolExecutor(4, thread_name_prefix="servermode-webhook")

    def __repr__(self) -> str:
        return f"Webhooks({len(self.urls)} urls, attempts={self.attempts})"

    @property
    def budget(self) -> float:
        """The longest all attempts of one delivery can take (its subscriber timeout)."""
        waits = sum(self.backoff * 2.0**n for n in range(self.attempts - 1))
        return self.attempts * self.timeout + waits + 1.0

    async def __call__(self, record: TransitionRecord) -> None:
        """Deliver ``record`` to every URL, retrying; never raises."""
        body = json.dumps(record.to_dict(), separators=(",", ":"), sort_keys=True).encode()
        await asyncio.gather(*(self.deliver(url, body) for url in self.urls))

    async def deliver(self, url: str, body: bytes) -> bool:
        """POST ``body`` to ``url`` until it is taken (2xx) or the attempts run out."""
        delivery = uuid.uuid4().hex
        loop = asyncio.get_running_loop()
        error = ""
        for attempt in range(1, self.attempts + 1):
            try:
                status = await loop.run_in_executor(self._pool, self._post, url, body, delivery)
            except Exception as exc:  # no connection, a timeout, a reset
                error = f"{type(exc).__name__}: {exc}"
            else:
                if 200 <= status < 300:
                    return True
                error = f"HTTP {status}"
            if attempt < self.attempts:
                _log.info(
                    "webhook_retry", url=_shown(url), attempt=attempt, error=error, id=delivery
                )
                await asyncio.sleep(self.backoff * 2.0 ** (attempt - 1))
        _log.warning(
            "webhook_undelivered", url=_shown(url), attempts=self.attempts, error=error, id=delivery
        )
        return False

    def _post(self, url: str, body: bytes, delivery: str) -> int:
        timestamp = str(int(self._clock()))
        request = urllib.request.Request(
            url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "User-Agent": "servermode-webhook",
                "Servermode-Event": "mode_transition",
                "Servermode-Delivery": delivery,
                TIMESTAMP_HEADER: timestamp,
                SIGNATURE_HEADER: sign(self._secret, timestamp, body),
                **({INSTANCE_HEADER: self.instance} if self.instance is not None else {}),
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return int(response.status)
        except urllib.error.HTTPError as answered:
            return int(answered.code)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _shown(url: str) -> str:
    """The URL without its query and user info, which may carry credentials."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))
