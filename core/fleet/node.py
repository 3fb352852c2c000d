"""The seam between the fleet logic and one instance's local side (its gate, store, audit).

:class:`LocalNode` is all the fleet logic asks of an instance: enter a draining state and
say when its outgoing requests are done, report what still runs, settle in a steady state
(saved, then opened at the gate, then audited), and keep records that change nothing.
:class:`GateNode` implements it over a :class:`~servermode.core.gate.Gate`, a
:class:`~servermode.core.store.Store` and an :class:`~servermode.core.audit.AuditLog`.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, TypeVar

import structlog

from ..audit import AuditLog
from ..controller import notify_drain_listeners
from ..errors import StoreError
from ..gate import Gate
from ..hooks import Hooks
from ..modes import Mode, State
from ..records import PersistedState, TransitionRecord, utc_now
from ..store import InMemoryStore, Store

__all__ = ["GateNode", "LocalDrain", "LocalNode"]

T = TypeVar("T")

_log = structlog.get_logger("servermode.fleet")

#: Called with the draining state when a drain begins; returns connections closed per category.
DrainListener = Callable[[State], Mapping[str, int] | None]


@dataclass(slots=True)
class LocalDrain:
    """One local drain: the state it left, the counts when it began, and its end."""

    source: State
    state: State
    started: float  # wall clock
    started_at: datetime
    drained: asyncio.Future[None]  # resolved once nothing outgoing is in flight
    in_flight: dict[str, int] = field(default_factory=dict)
    closed: dict[str, int] = field(default_factory=dict)


class LocalNode(Protocol):
    @property
    def state(self) -> State: ...

    def in_flight(self) -> dict[str, int]:
        """The counted requests in flight, per category."""
        ...

    def outgoing(self, state: State) -> dict[str, int]:
        """Of those, the ones draining ``state`` waits for (its target refuses them)."""
        ...

    def enter_drain(self, state: State, seconds_left: float) -> LocalDrain:
        """Refuse what draining ``state`` refuses from now on; the result says when drained.

        Does not save the draining state: the fleet engine holds the truth of a drain.
        """
        ...

    async def settle(self, state: State, record: TransitionRecord) -> TransitionRecord:
        """Save steady ``state`` with ``record``, then admit under it, then audit."""
        ...

    @property
    def prepares_drains(self) -> bool:
        """Whether :meth:`before_drain` has work to do (the application's hooks)."""
        ...

    async def before_drain(self, target: Mode) -> None:
        """Run the application's before-drain hooks (bounded; never raises)."""
        ...

    def after_switch(self, record: TransitionRecord) -> None:
        """Run the application's after-switch hooks with ``record``, in the background."""
        ...

    def show_window(self, until: float | None) -> None:
        """Refusals count down to ``until`` (wall clock: a window's end), or not (None)."""
        ...

    async def note(self, record: TransitionRecord) -> TransitionRecord:
        """Keep and audit a record that changed no state (refused, noop)."""
        ...


class GateNode:
    """:class:`LocalNode` over a gate, a store and an audit log.

    ``clock`` is the wall clock the fleet runs on (tests move it).
    """

    def __init__(
        self,
        gate: Gate,
        store: Store | None = None,
        audit: AuditLog | None = None,
        *,
        hooks: Hooks | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.gate = gate
        self.store: Store = store if store is not None else InMemoryStore()
        self.audit = audit if audit is not None else AuditLog()
        self.hooks = hooks if hooks is not None else Hooks()
        self.clock = clock
        self.listeners: list[DrainListener] = []
        self._after: set[asyncio.Task[None]] = set()

    @property
    def state(self) -> State:
        return self.gate.state

    def in_flight(self) -> dict[str, int]:
        return self.gate.in_flight()

    def outgoing(self, state: State) -> dict[str, int]:
        return self.gate.outgoing_in_flight() if self.gate.state is state else {}

    def enter_drain(self, state: State, seconds_left: float) -> LocalDrain:
        loop = asyncio.get_running_loop()
        drained: asyncio.Future[None] = loop.create_future()
        drain = LocalDrain(
            source=self.gate.state,
            state=state,
            started=self.clock(),
            started_at=utc_now(),
            drained=drained,
        )
        deadline = time.monotonic() + max(0.0, seconds_left)
        drain.in_flight = self.gate.begin_drain(state, deadline, _resolver(loop, drained))
        drain.closed = notify_drain_listeners(self.listeners, state)
        return drain

    async def settle(self, state: State, record: TransitionRecord) -> TransitionRecord:
        saved = await self._io(self.store.save, PersistedState(state, since=record.at), record)
        self.gate.set_state(state)
        stored = saved if saved is not None else record
        self.audit.emit(stored)
        return stored

    async def note(self, record: TransitionRecord) -> TransitionRecord:
        stored = await self._io(self.store.append, record)
        self.audit.emit(stored)
        return stored

    @property
    def prepares_drains(self) -> bool:
        return self.hooks.has_before_drain

    async def before_drain(self, target: Mode) -> None:
        await self.hooks.run_before_drain(target)

    def after_switch(self, record: TransitionRecord) -> None:
        if not self.hooks.has_after_switch:
            return
        # In the background: the fleet's rounds (and heartbeats) never wait for a hook.
        task = asyncio.get_running_loop().create_task(
            self.hooks.run_after_switch(record), name="servermode fleet after-switch"
        )
        self._after.add(task)
        task.add_done_callback(self._after.discard)

    def show_window(self, until: float | None) -> None:
        # The gate's deadlines are on time.monotonic; the fleet's times are wall clock.
        self.gate.retry_steady_until(
            None if until is None else time.monotonic() + (until - self.clock())
        )

    async def _io(self, call: Callable[..., T], *args: Any) -> T:
        """Call the store, off the event loop when it may block; its failures are StoreErrors."""
        try:
            if self.store.blocking:
                return await asyncio.to_thread(call, *args)
            return call(*args)
        except StoreError:
            raise
        except Exception as exc:
            raise StoreError(f"store {type(self.store).__name__} failed: {exc}") from exc


def _resolver(loop: asyncio.AbstractEventLoop, drained: asyncio.Future[None]) -> Callable[[], None]:
    """A callback that resolves ``drained`` on ``loop``, from any thread."""
    owner = threading.get_ident()

    def resolve() -> None:
        if not drained.done():
            drained.set_result(None)

    def on_drained() -> None:
        if threading.get_ident() == owner:
            resolve()
        else:
            loop.call_soon_threadsafe(resolve)

    return on_drained
