"""The fleet's bypass: one for every instance, the one of the instance that joined last.

A bypass (a secret, its cookie, an allowlist) is part of the fleet state, not one instance's:
at start each instance publishes the bypass it was configured with (``none`` too, so that a
rolling restart with a new secret rotates it and one without removes it), then every
instance follows what the engine holds, read every ``period`` seconds. The record is kept
apart from the fleet state (it never bumps the epoch) and holds digests only: the SHA-256 of
the secret and of the cookie value. Neither lets anyone make a cookie or pass the gate: the
link derives the cookie from the secret presented once its digest matches.

A lost engine changes nothing here: the instance keeps the last bypass it knew (logged once)
and reads again at the next period. An engine that comes back empty gets the bypass back
from the first instance that reads it (only where none was written meanwhile).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

import structlog

from .engine import FleetEngine, FleetEngineUnavailable

__all__ = ["BYPASS_PERIOD", "BypassFollower", "FleetBypass"]

#: Seconds between two reads of the fleet's bypass (one engine GET per instance each time).
BYPASS_PERIOD = 2.0

_log = structlog.get_logger("servermode.fleet")


@dataclass(frozen=True, slots=True)
class FleetBypass:
    """The fleet's bypass as the engine keeps it: digests and networks, never the secret.

    ``secret_sha256`` and ``cookie_sha256`` (hex) are both set or both None (no secret);
    ``allow`` holds the allowlist's CIDRs as written by the instance that published it.
    """

    secret_sha256: str | None
    cookie_sha256: str | None
    allow: tuple[str, ...]
    published_by: str
    published_at: float

    def __post_init__(self) -> None:
        if (self.secret_sha256 is None) != (self.cookie_sha256 is None):
            raise ValueError("a fleet bypass has both digests (a secret) or neither")
        for digest in (self.secret_sha256, self.cookie_sha256):
            if digest is not None and not _is_sha256(digest):
                raise ValueError("a fleet bypass digest is 64 lowercase hex digits")

    @property
    def has_secret(self) -> bool:
        return self.secret_sha256 is not None

    @property
    def is_none(self) -> bool:
        """Nothing passes: no secret and an empty allowlist."""
        return self.secret_sha256 is None and not self.allow

    def same_rule(self, other: FleetBypass | None) -> bool:
        """Whether ``other`` lets the same callers through (who published it aside)."""
        return other is not None and (
            self.secret_sha256,
            self.cookie_sha256,
            self.allow,
        ) == (other.secret_sha256, other.cookie_sha256, other.allow)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["allow"] = list(self.allow)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FleetBypass:
        if not isinstance(data, dict):
            raise ValueError("a fleet bypass is a JSON object")
        allow = data.get("allow") or []
        if not isinstance(allow, list) or not all(isinstance(a, str) for a in allow):
            raise ValueError("a fleet bypass allowlist is a list of strings")
        return cls(
            secret_sha256=data.get("secret_sha256"),
            cookie_sha256=data.get("cookie_sha256"),
            allow=tuple(allow),
            published_by=str(data["published_by"]),
            published_at=float(data["published_at"]),
        )


def _is_sha256(digest: object) -> bool:
    return (
        isinstance(digest, str)
        and len(digest) == 64
        and all(c in "0123456789abcdef" for c in digest)
    )


class BypassFollower:
    """Publishes this instance's bypass at start, then applies the fleet's as it changes.

    Parameters:
        engine: the fleet engine (the controller's).
        own: this instance's configured bypass (``published_by`` names this instance; its
            ``published_at`` is stamped when published).
        apply: makes a bypass the one this instance's gate honours; a ValueError (a record it
            cannot use) keeps the previous one.
        period: seconds between two reads.
        clock: wall clock (seconds).
    """

    def __init__(
        self,
        engine: FleetEngine,
        own: FleetBypass,
        apply: Callable[[FleetBypass], None],
        *,
        period: float = BYPASS_PERIOD,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine = engine
        self.own = own
        self.apply = apply
        self.period = period
        self.clock = clock
        #: The fleet's bypass this instance honours; None until published or read.
        self.current: FleetBypass | None = None
        self.published = False
        self.lost: str | None = None  # why the engine could not be reached, while it cannot
        self._refused: FleetBypass | None = None  # the last record ``apply`` refused
        self._task: asyncio.Task[None] | None = None

    @property
    def instance(self) -> str:
        return self.own.published_by

    async def start(self) -> None:
        """Publish this instance's bypass (before the first request), then follow."""
        await self.sync()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.period)
            await self.sync()

    async def sync(self) -> None:
        """One round: publish if not done yet, else read; never raises for the engine."""
        try:
            if not self.published:
                await self._publish()
            else:
                await self._follow()
        except FleetEngineUnavailable as exc:
            if self.lost is None:
                _log.warning(
                    "fleet_bypass_unreachable",
                    instance=self.instance,
                    error=exc.reason,
                    kept="the last bypass known" if self.current else "this instance's own",
                )
            self.lost = exc.reason
            return
        if self.lost is not None:
            _log.info("fleet_bypass_reachable", instance=self.instance)
            self.lost = None

    async def _publish(self) -> None:
        mine = replace(self.own, published_at=self.clock())
        previous = await self.engine.publish_bypass(mine)
        self.published = True
        if previous is not None and not mine.same_rule(previous):
            # The rule: the last to join decides. Said loudly: an operator may not expect it.
            _log.warning(
                "fleet_bypass_replaced",
                instance=self.instance,
                replaced=previous.published_by,
                secret=mine.has_secret,
                allow=list(mine.allow),
                previous_secret=previous.has_secret,
                previous_allow=list(previous.allow),
            )
        self._apply(mine)

    async def _follow(self) -> None:
        record = await self.engine.load_bypass()
        if record is None and self.current is not None:
            # The engine came back empty: write back what the fleet had, unless another
            # instance did first (then follow theirs).
            record = await self.engine.publish_bypass(self.current, replace=False)
            record = record if record is not None else self.current
        if record is not None:
            self._apply(record)

    def _apply(self, record: FleetBypass) -> None:
        if record == self.current or record == self._refused:
            return
        try:
            self.apply(record)
        except ValueError as exc:
            self._refused = record
            _log.error(
                "fleet_bypass_unusable",
                instance=self.instance,
                published_by=record.published_by,
                error=str(exc),
                kept="the last bypass known",
            )
            return
        before, self.current = self.current, record
        if record.published_by != self.instance and not record.same_rule(before):
            _log.info(
                "fleet_bypass_followed",
                instance=self.instance,
                published_by=record.published_by,
                secret=record.has_secret,
                allow=list(record.allow),
            )
