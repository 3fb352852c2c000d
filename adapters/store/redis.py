"""The fleet engine on Redis (``redis.asyncio``): a thin adapter of the core's FleetEngine port.

Keys, under a prefix so that several fleets share one Redis (``servermode`` by default):

- ``<prefix>:state``: the fleet state, JSON. Changed only by one Lua script that compares the
  stored epoch, writes the new state, appends the record to the log and publishes a wake-up,
  atomically (so exactly one of two concurrent changes wins, and only the winner's record is
  written).
- ``<prefix>:log``: the fleet records, a stream capped at about ``max_records`` entries.
- ``<prefix>:member:<instance>``: each instance's heartbeat, JSON, with a TTL (PX);
  ``<prefix>:members``, the set of instance names, pruned of expired ones when read.
- ``<prefix>:reports:<epoch>``: a hash of the drain reports of one epoch (expires in a day).
- ``<prefix>:out:<instance>``: the mode of an instance taken out of the fleet, while it is.
- ``<prefix>:bypass``: the fleet's bypass, JSON (digests, never the secret); apart from the
  state, so that publishing it never bumps the epoch.
- ``<prefix>:wake`` (pub/sub channel): a hint to read early, published at each change of the
  state; ``<prefix>:wake:<instance>``: a report for the instance that checks the barrier.
  Keys are the truth: the members
  also read on a period, and the subscription is re-established after a lost connection
  (redis.asyncio's pub/sub does not reconnect by itself).

Every call is bounded by ``timeout`` seconds and is not retried: a failure raises
FleetEngineUnavailable at once, and the fleet logic decides what to do (its next round retries).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import redis.asyncio as aioredis
import structlog
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from servermode.core.fleet import (
    DrainReport,
    FleetBypass,
    FleetEngineUnavailable,
    FleetRecord,
    FleetState,
    Heartbeat,
    InstanceOut,
    Wake,
)

__all__ = ["DEFAULT_PREFIX", "RedisFleetEngine", "check_fleet_url"]

T = TypeVar("T")
DEFAULT_PREFIX = "servermode"
#: Seconds the drain reports of one epoch are kept.
REPORTS_TTL = 86_400

_log = structlog.get_logger("servermode.fleet")
_WAKES = {wake.value: wake for wake in Wake}

# KEYS: state, log. ARGV: expected epoch ('' = no state), new state, record ('' = none),
# log cap, wake channel, wake message.
_COMPARE_AND_SET = """
local current = redis.call('GET', KEYS[1])
if current then
    if ARGV[1] == '' or cjson.decode(current)['epoch'] ~= tonumber(ARGV[1]) then return 0 end
elseif ARGV[1] ~= '' then
    return 0
end
redis.call('SET', KEYS[1], ARGV[2])
if ARGV[3] ~= '' then
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', 'record', ARGV[3])
end
redis.call('PUBLISH', ARGV[5], ARGV[6])
return 1
"""


def check_fleet_url(url: str) -> str:
    """``redis://HOST:PORT/DB`` (or ``rediss://``, ``unix://``), else a ValueError saying why."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ValueError(f"fleet URL {url!r}: expected redis://HOST:PORT/DB")
    if parts.scheme != "unix" and not parts.hostname:
        raise ValueError(f"fleet URL {url!r}: no host")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise ValueError(f"fleet URL {url!r}: bad port") from None
    db = parts.path.strip("/")
    if db and not db.isdigit():
        raise ValueError(f"fleet URL {url!r}: the database is a number, not {db!r}")
    return url


class RedisFleetEngine:
    """The fleet engine over one Redis database (see the module docstring for the keys)."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        timeout: float = 1.0,
        max_records: int = 1000,
        resubscribe_after: float = 0.5,
    ) -> None:
        self.url = check_fleet_url(url)
        self.prefix = prefix
        self.max_records = max_records
        self.resubscribe_after = resubscribe_after
        self._redis = aioredis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
            decode_responses=True,
        )
        self._cas = self._redis.register_script(_COMPARE_AND_SET)
        self._subscribers: list[Callable[[Wake], None]] = []
        self._listener: asyncio.Task[None] | None = None
        self.key_state = f"{prefix}:state"
        self.key_log = f"{prefix}:log"
        self.key_members = f"{prefix}:members"
        self.key_bypass = f"{prefix}:bypass"
        self.channel = f"{prefix}:wake"

    def _member(self, instance: str) -> str:
        return f"{self.prefix}:member:{instance}"

    def _out(self, instance: str) -> str:
        return f"{self.prefix}:out:{instance}"

    def _own_channel(self, instance: str) -> str:
        return f"{self.channel}:{instance}"

    def _reports(self, epoch: int) -> str:
        return f"{self.prefix}:reports:{epoch}"

    async def _call(self, call: Awaitable[T]) -> T:
        try:
            return await call
        except (RedisError, OSError) as exc:
            raise FleetEngineUnavailable(f"redis: {exc or type(exc).__name__}") from exc
        except (ValueError, KeyError, TypeError) as exc:  # a value that is not ours
            raise FleetEngineUnavailable(f"redis holds a malformed fleet value: {exc}") from exc

    # -- the port --------------------------------------------------------------------------

    async def load(self) -> FleetState | None:
        async def read() -> FleetState | None:
            raw = await self._redis.get(self.key_state)
            return None if raw is None else FleetState.from_dict(json.loads(raw))

        return await self._call(read())

    async def load_member(self, instance: str) -> tuple[FleetState | None, InstanceOut | None]:
        async def read() -> tuple[FleetState | None, InstanceOut | None]:
            state, out = await self._redis.mget([self.key_state, self._out(instance)])
            return (
                None if state is None else FleetState.from_dict(json.loads(state)),
                None if out is None else InstanceOut.from_dict(json.loads(out)),
            )

        return await self._call(read())

    async def set_out(self, instance: str, out: InstanceOut | None) -> None:
        async def write() -> None:
            async with self._redis.pipeline(transaction=True) as pipe:
                if out is None:
                    pipe.delete(self._out(instance))
                else:
                    pipe.set(self._out(instance), _dumps(out.to_dict()))
                pipe.publish(self._own_channel(instance), Wake.STATE.value)
                await pipe.execute()

        await self._call(write())

    async def heartbeat(self, instance: str) -> Heartbeat | None:
        async def read() -> Heartbeat | None:
            raw = await self._redis.get(self._member(instance))
            return None if raw is None else Heartbeat.from_dict(json.loads(raw))

        return await self._call(read())

    async def compare_and_set(
        self, expected_epoch: int | None, state: FleetState, record: FleetRecord | None = None
    ) -> bool:
        args = [
            "" if expected_epoch is None else str(expected_epoch),
            _dumps(state.to_dict()),
            "" if record is None else _dumps(record.to_dict()),
            str(self.max_records),
            self.channel,
            Wake.STATE.value,
        ]
        won = await self._call(self._cas(keys=[self.key_state, self.key_log], args=args))
        return bool(won)

    async def beat(self, heartbeat: Heartbeat, ttl: float) -> None:
        async def write() -> None:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.set(
                    self._member(heartbeat.instance),
                    _dumps(heartbeat.to_dict()),
                    px=max(1, int(ttl * 1000)),
                )
                pipe.sadd(self.key_members, heartbeat.instance)
                await pipe.execute()

        await self._call(write())

    async def leave(self, instance: str) -> None:
        async def remove() -> None:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.delete(self._member(instance))
                pipe.srem(self.key_members, instance)
                await pipe.execute()

        await self._call(remove())

    async def members(self) -> list[Heartbeat]:
        async def read() -> list[Heartbeat]:
            names = sorted(str(n) for n in await self._redis.smembers(self.key_members))
            if not names:
                return []
            values = await self._redis.mget([self._member(n) for n in names])
            gone = [n for n, v in zip(names, values, strict=True) if v is None]
            if gone:  # expired heartbeats: forget their names
                await self._redis.srem(self.key_members, *gone)
            return [Heartbeat.from_dict(json.loads(v)) for v in values if v is not None]

        return await self._call(read())

    async def live(self) -> set[str]:
        async def read() -> set[str]:
            names = sorted(str(n) for n in await self._redis.smembers(self.key_members))
            if not names:
                return set()
            async with self._redis.pipeline(transaction=False) as pipe:
                for name in names:
                    pipe.exists(self._member(name))
                found = await pipe.execute()
            gone = [n for n, there in zip(names, found, strict=True) if not there]
            if gone:
                await self._redis.srem(self.key_members, *gone)
            return set(names) - set(gone)

        return await self._call(read())

    async def is_live(self, instance: str) -> bool:
        return bool(await self._call(self._redis.exists(self._member(instance))))

    async def counts(self, epoch: int) -> tuple[int, int]:
        async def read() -> tuple[int, int]:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.scard(self.key_members)
                pipe.hlen(self._reports(epoch))
                named, reported = await pipe.execute()
            return int(named), int(reported)

        return await self._call(read())

    async def report(self, report: DrainReport, notify: str | None = None) -> None:
        async def write() -> None:
            key = self._reports(report.epoch)
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hset(key, report.instance, _dumps(report.to_dict()))
                pipe.expire(key, REPORTS_TTL)
                if notify is not None:
                    pipe.publish(self._own_channel(notify), Wake.REPORT.value)
                await pipe.execute()

        await self._call(write())

    async def reports(self, epoch: int) -> dict[str, DrainReport]:
        async def read() -> dict[str, DrainReport]:
            raw = await self._redis.hgetall(self._reports(epoch))
            return {str(name): DrainReport.from_dict(json.loads(v)) for name, v in raw.items()}

        return await self._call(read())

    async def reported(self, epoch: int) -> set[str]:
        async def read() -> set[str]:
            return {str(name) for name in await self._redis.hkeys(self._reports(epoch))}

        return await self._call(read())

    async def records(self, limit: int = 50) -> list[FleetRecord]:
        async def read() -> list[FleetRecord]:
            if limit <= 0:
                return []
            entries = await self._redis.xrevrange(self.key_log, count=limit) or []
            return [
                FleetRecord.from_dict(json.loads(fields["record"]))
                for _, fields in entries
                if fields is not None
            ]

        return await self._call(read())

    async def load_bypass(self) -> FleetBypass | None:
        async def read() -> FleetBypass | None:
            return _bypass(await self._redis.get(self.key_bypass))

        return await self._call(read())

    async def publish_bypass(
        self, bypass: FleetBypass, *, replace: bool = True
    ) -> FleetBypass | None:
        async def write() -> FleetBypass | None:
            # GET then SET in one MULTI: the answer is exactly the value replaced (or kept).
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.get(self.key_bypass)
                pipe.set(self.key_bypass, _dumps(bypass.to_dict()), nx=not replace)
                previous, _ = await pipe.execute()
            return _bypass(previous)

        return await self._call(write())

    def subscribe(self, instance: str, wake: Callable[[Wake], None]) -> None:
        """Listen on the fleet's channel and on ``instance``'s own (one listener per engine)."""
        self._subscribers.append(wake)
        if self._listener is None:
            channels = (self.channel, self._own_channel(instance))
            self._listener = asyncio.get_running_loop().create_task(self._listen(channels))

    async def _listen(self, channels: tuple[str, ...]) -> None:
        """Wake the subscribers on each message; subscribe again whenever the link breaks."""
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(*channels)
                self._wake(Wake.STATE)  # a new subscription may have missed messages: look now
                while True:
                    # A bounded wait: an idle link is not an error (socket_timeout would be).
                    message = await pubsub.get_message(timeout=self.resubscribe_after * 2)
                    if message is not None:
                        self._wake(_WAKES.get(str(message.get("data")), Wake.STATE))
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                _log.debug("fleet_wakeups_lost", error=str(exc))
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(self.resubscribe_after)

    def _wake(self, what: Wake) -> None:
        for wake in self._subscribers:
            wake(what)

    async def close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
        with contextlib.suppress(RedisError, OSError):
            await self._redis.aclose()

    # -- for tests and operators -----------------------------------------------------------

    async def info(self) -> dict[str, Any]:
        """Redis' own figures (INFO), for benchmarks and diagnostics."""
        return await self._call(self._redis.info())


def _bypass(raw: str | bytes | None) -> FleetBypass | None:
    return None if raw is None else FleetBypass.from_dict(json.loads(raw))


def _dumps(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), sort_keys=True)
