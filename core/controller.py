"""The mode controller: runs mode changes (drain, switch, persist, audit), one at a time."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, TypeVar

import structlog

from .audit import AuditLog
from .errors import (
    ModeChangeCancelled,
    ModeChangeRolledBack,
    ServerModeError,
    StoreError,
    SwitchInProgress,
)
from .gate import Gate, Ticket
from .machine import ModeMachine, TimeoutPolicy, Trigger
from .modes import Mode, State, parse_mode
from .policy import CONTEXT_SERVICES, AdmissionPolicy
from .records import Outcome, PersistedState, TransitionRecord, utc_now
from .store import InMemoryStore, Store

__all__ = ["ModeController", "ModeStatus"]

T = TypeVar("T")

#: Called with the draining state when a drain begins (the gate already refuses what that
#: state refuses); returns the long-lived connections it closed, per category, or None.
DrainListener = Callable[[State], Mapping[str, int] | None]

_log = structlog.get_logger("servermode")

_START = {Mode.MAINTENANCE: Trigger.START_MAINTENANCE, Mode.PRODUCTION: Trigger.START_PRODUCTION}

# How a drain that ended through each trigger is reported.
_OUTCOME_OF = {
    Trigger.DRAINED: Outcome.COMPLETED,
    Trigger.CANCEL: Outcome.CANCELLED,
    Trigger.RECOVER: Outcome.RECOVERED,
}


@dataclass(frozen=True, slots=True)
class ModeStatus:
    """A snapshot of the controller for status pages; drain fields are None when steady."""

    mode: Mode
    state: State
    since: datetime
    in_flight: dict[str, int]
    drain_timeout: float
    timeout_policy: TimeoutPolicy
    target: Mode | None = None
    drain_started: datetime | None = None
    deadline: datetime | None = None


@dataclass(frozen=True, slots=True)
class _Context:
    """Who asked for a change, for the audit."""

    actor: str | None = None
    client: str | None = None
    request_id: str | None = None
    reason: str | None = None

    def fields(self) -> dict[str, Any]:
        return {
            "actor": self.actor,
            "client": self.client,
            "request_id": self.request_id,
            "reason": self.reason,
        }


@dataclass(slots=True)
class _Drain:
    """One mode change under way."""

    source: State
    state: State
    target: Mode
    context: _Context
    started: float
    started_at: datetime
    deadline: float
    deadline_at: datetime
    ended: asyncio.Future[None]  # resolved by the first of: drained, cancelled, timed out
    in_flight: dict[str, int] = field(default_factory=dict)
    closed: dict[str, int] = field(default_factory=dict)
    task: asyncio.Task[TransitionRecord] | None = None
    drained: bool = False
    cancelled: _Context | None = None  # who asked to cancel, once someone has


class ModeController:
    """Owns the machine, the gate, the store and the audit log.

    Parameters:
        store: where the state and the history are kept (default: in memory).
        policy: which categories each state admits (default: the Context Services preset).
        initial_mode: the mode when the store holds nothing yet.
        drain_timeout: seconds a drain waits for the requests admitted before it.
        timeout_policy: what a drain that times out does (``force`` or ``rollback``).
        refusal_retry_after: retry hint (seconds) for requests a steady mode refuses.
        audit: the audit log (default: structlog logger ``servermode.audit``).
    """

    def __init__(
        self,
        store: Store | None = None,
        *,
        policy: AdmissionPolicy = CONTEXT_SERVICES,
        initial_mode: Mode | str = Mode.PRODUCTION,
        drain_timeout: float = 60.0,
        timeout_policy: TimeoutPolicy | str = TimeoutPolicy.FORCE,
        refusal_retry_after: int = 60,
        audit: AuditLog | None = None,
    ) -> None:
        if drain_timeout < 0:
            raise ValueError(f"drain_timeout must be >= 0, not {drain_timeout!r}")
        self.store: Store = store if store is not None else InMemoryStore()
        self.policy = policy
        self.initial_mode = parse_mode(initial_mode)
        self.drain_timeout = float(drain_timeout)
        self._machine = ModeMachine(self.initial_mode.state, TimeoutPolicy(timeout_policy))
        self.gate = Gate(policy, self.initial_mode.state, refusal_retry_after=refusal_retry_after)
        self._audit = audit if audit is not None else AuditLog()
        self._since = utc_now()
        self._drain: _Drain | None = None
        self._started = False
        self._drain_listeners: list[DrainListener] = []

    def add_drain_listener(self, listener: DrainListener) -> None:
        """Call ``listener(state)`` whenever a drain begins, once the gate refuses new requests.

        For what a drain cannot wait out: the HTTP adapter closes the open WebSockets whose
        category the target refuses. What it returns (connections closed per category) is the
        transition record's ``closed``. A listener that raises is logged and ignored.
        """
        self._drain_listeners.append(listener)

    # -- reading ---------------------------------------------------------------------------

    @property
    def state(self) -> State:
        """The state in force: the gate's, which moves only once the new state is saved.

        (The machine moves first, to compute the next state, and is put back if the save
        fails; reporting it would claim a mode that may never be saved.)
        """
        return self.gate.state

    @property
    def mode(self) -> Mode:
        return self.state.mode

    @property
    def timeout_policy(self) -> TimeoutPolicy:
        return self._machine.timeout_policy

    def admit(self, category: str) -> Ticket:
        """Admit one request of ``category`` (see :meth:`Gate.admit`)."""
        return self.gate.admit(category)

    def retry_after(self) -> int:
        return self.gate.retry_after()

    def status(self) -> ModeStatus:
        drain = self._drain
        state = self.state
        return ModeStatus(
            mode=state.mode,
            state=state,
            since=self._since,
            in_flight=self.gate.in_flight(),
            drain_timeout=self.drain_timeout,
            timeout_policy=self.timeout_policy,
            target=drain.target if drain else None,
            drain_started=drain.started_at if drain else None,
            deadline=drain.deadline_at if drain else None,
        )

    async def history(self, limit: int = 50, before: int | None = None) -> list[TransitionRecord]:
        return await self._io(self.store.history, limit, before)

    # -- life cycle ------------------------------------------------------------------------

    async def start(self) -> TransitionRecord | None:
        """Load the persisted state; record the initial mode, or recover an interrupted drain.

        Returns the record written at start (initialized or recovered), or None.
        """
        if self._started:
            return None
        persisted = await self._io(self.store.load)
        now = utc_now()
        record: TransitionRecord | None = None
        if persisted is None:
            state = self.initial_mode.state
            record = self._record(state, state, None, self.initial_mode, Outcome.INITIALIZED, now)
        elif persisted.state.is_draining:
            # No request survived the crash, so there is nothing left to drain: complete it.
            target = persisted.target
            assert target is not None
            self._machine.restore(persisted.state)
            state = self._machine.fire(Trigger.RECOVER)
            record = self._record(
                persisted.state, state, Trigger.RECOVER, target, Outcome.RECOVERED, now
            )
        else:
            state = persisted.state
            now = persisted.since
        if record is not None:
            record = await self._save(PersistedState(state, since=now), record)
            self._audit.emit(record)
        self._machine.restore(state)
        self.gate.set_state(state)
        self._since = now
        self._started = True
        return record

    async def close(self) -> None:
        """Let a change under way finish (bounded by the drain timeout); close the store."""
        drain = self._drain
        if drain is not None and drain.task is not None:
            with contextlib.suppress(ServerModeError):
                await asyncio.shield(drain.task)
        await self._io(self.store.close)
        self._started = False

    # -- changing mode ---------------------------------------------------------------------

    async def set_mode(
        self,
        mode: Mode | str,
        *,
        actor: str | None = None,
        client: str | None = None,
        request_id: str | None = None,
        reason: str | None = None,
    ) -> TransitionRecord:
        """Switch to ``mode`` and return the record once the switch is complete.

        Raises InvalidMode for a bad name, SwitchInProgress while another change drains,
        ModeChangeRolledBack / ModeChangeCancelled when the old mode stays in force, and
        StoreError when the change could not be saved (the old mode stays in force).
        Cancelling the caller does not stop the change: it completes or times out anyway.
        """
        target = parse_mode(mode)
        if not self._started:
            raise RuntimeError("ModeController.start() must be awaited before set_mode()")
        context = _Context(actor, client, request_id, reason)
        current = self.state
        if self._drain is not None:
            retry = self.gate.retry_after()
            refused = self._record(current, current, _START[target], target, Outcome.REFUSED)
            await self._append(refused, context)
            raise SwitchInProgress(current, retry)
        if current.mode is target:
            noop = self._record(current, current, None, target, Outcome.NOOP)
            return await self._append(noop, context)
        # Everything up to create_task runs without yielding, so no second change can slip in.
        drain = self._begin(target, context)
        drain.task = asyncio.get_running_loop().create_task(self._switch(drain))
        return await asyncio.shield(drain.task)

    async def cancel(
        self, *, actor: str | None = None, reason: str | None = None
    ) -> TransitionRecord | None:
        """Abandon the drain under way and return to the mode it was leaving.

        Returns the record of the change (cancelled, or whatever ended it first), or None
        when no change is under way.
        """
        drain = self._drain
        if drain is None or drain.task is None:
            return None
        if drain.cancelled is None:
            drain.cancelled = _Context(actor=actor, reason=reason)
            _end(drain.ended)
        try:
            return await asyncio.shield(drain.task)
        except (ModeChangeCancelled, ModeChangeRolledBack) as failed:
            return failed.record

    def _begin(self, target: Mode, context: _Context) -> _Drain:
        loop = asyncio.get_running_loop()
        source = self.state
        state = self._machine.fire(_START[target])
        started, started_at = time.monotonic(), utc_now()
        drain = _Drain(
            source=source,
            state=state,
            target=target,
            context=context,
            started=started,
            started_at=started_at,
            deadline=started + self.drain_timeout,
            deadline_at=started_at + timedelta(seconds=self.drain_timeout),
            ended=loop.create_future(),
        )
        self._drain = drain
        drain.in_flight = self.gate.begin_drain(state, drain.deadline, _resolver(loop, drain))
        drain.closed = self._notify_drain(state)
        return drain

    def _notify_drain(self, state: State) -> dict[str, int]:
        closed: dict[str, int] = {}
        for listener in self._drain_listeners:
            try:
                counts = listener(state) or {}
            except Exception:
                _log.exception("drain_listener_failed", listener=repr(listener))
                continue
            for category, n in counts.items():
                if n:
                    closed[category] = closed.get(category, 0) + n
        return closed

    async def _switch(self, drain: _Drain) -> TransitionRecord:
        intent = PersistedState(drain.state, drain.started_at, drain.started_at, drain.deadline_at)
        try:
            await self._save(intent)
        except StoreError:
            self._machine.fire(Trigger.CANCEL)
            self._fail(drain)
            raise
        trigger = await self._wait(drain)
        context = drain.context
        if trigger is Trigger.CANCEL:
            asked = drain.cancelled
            assert asked is not None
            context = _Context(
                asked.actor or context.actor, context.client, context.request_id, asked.reason
            )
        stragglers = self.gate.in_flight() if trigger is not Trigger.DRAINED else {}
        state = self._machine.fire(trigger)
        if trigger is Trigger.DRAIN_TIMED_OUT:
            outcome = Outcome.FORCED if self._machine.forces_on_timeout() else Outcome.ROLLED_BACK
        else:
            outcome = _OUTCOME_OF[trigger]
        record = self._record(
            drain.source,
            state,
            trigger,
            drain.target,
            outcome,
            duration_ms=(time.monotonic() - drain.started) * 1000,
            in_flight=drain.in_flight,
            stragglers={k: v for k, v in stragglers.items() if v},
            closed=drain.closed,
            **context.fields(),
        )
        now = utc_now()
        try:
            record = await self._save(PersistedState(state, since=now), record)
        except StoreError:
            self._machine.restore(drain.source)
            self._fail(drain)
            # The saved intent would complete this switch at the next start; put the old
            # state back on disk too if the store lets us (it may well fail again).
            with contextlib.suppress(StoreError):
                await self._save(PersistedState(drain.source, since=self._since))
            raise
        # The gate opens in the new state only once that state is saved.
        self.gate.set_state(state)
        self._since = now
        self._drain = None
        self._audit.emit(record)
        if outcome is Outcome.ROLLED_BACK:
            raise ModeChangeRolledBack(
                record,
                f"drain timed out after {self.drain_timeout:g}s with requests still in flight; "
                f"the server stays in {drain.source.mode} mode",
            )
        if outcome is Outcome.CANCELLED:
            raise ModeChangeCancelled(
                record, f"mode change cancelled; the server stays in {drain.source.mode} mode"
            )
        return record

    async def _wait(self, drain: _Drain) -> Trigger:
        # One future that every way out resolves, awaited directly: the switch resumes one
        # event-loop hop after the last release (asyncio.wait would add a second hop, and on a
        # busy loop each hop waits behind everything queued before it).
        remaining = max(0.0, drain.deadline - time.monotonic())
        timer = asyncio.get_running_loop().call_later(remaining, _end, drain.ended)
        try:
            await drain.ended
        finally:
            timer.cancel()
        if drain.cancelled is not None:
            return Trigger.CANCEL
        if drain.drained:
            return Trigger.DRAINED
        return Trigger.DRAIN_TIMED_OUT

    def _fail(self, drain: _Drain) -> None:
        """Undo a change that could not be saved: the old mode is back in force, audited."""
        self.gate.set_state(drain.source)
        self._drain = None
        record = self._record(
            drain.source,
            drain.source,
            None,
            drain.target,
            Outcome.FAILED,
            duration_ms=(time.monotonic() - drain.started) * 1000,
            in_flight=drain.in_flight,
            **drain.context.fields(),
        )
        self._audit.emit(record)

    # -- records and I/O -------------------------------------------------------------------

    def _record(
        self,
        from_state: State,
        to_state: State,
        trigger: Trigger | None,
        target: Mode,
        outcome: Outcome,
        at: datetime | None = None,
        **fields: Any,
    ) -> TransitionRecord:
        return TransitionRecord(
            from_state=from_state,
            to_state=to_state,
            trigger=trigger.value if trigger is not None else None,
            target_mode=target,
            outcome=outcome,
            at=at or utc_now(),
            **fields,
        )

    async def _append(self, record: TransitionRecord, context: _Context) -> TransitionRecord:
        record = replace(record, **context.fields())
        try:
            record = await self._io(self.store.append, record)
        finally:
            self._audit.emit(record)
        return record

    async def _save(
        self, state: PersistedState, record: TransitionRecord | None = None
    ) -> TransitionRecord:
        saved = await self._io(self.store.save, state, record)
        return saved if saved is not None else record  # type: ignore[return-value]

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


def _end(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _resolver(loop: asyncio.AbstractEventLoop, drain: _Drain) -> Callable[[], None]:
    """A callback, safe from any thread: marks ``drain`` drained and ends its wait, on ``loop``."""
    loop_thread = threading.get_ident()

    def resolve() -> None:
        drain.drained = True
        _end(drain.ended)

    def drained() -> None:
        if threading.get_ident() == loop_thread:
            resolve()
        else:
            loop.call_soon_threadsafe(resolve)

    return drained
