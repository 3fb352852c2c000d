"""The mode controller: runs mode changes (drain, switch, persist, audit), one at a time.

Every step of a switch is planned first (the transition table's :func:`step` says where a
trigger leads), saved second, and applied last: the machine and the gate move together, and
only once the state they move to is saved. Whatever ends a switch (drained, timed out,
cancelled, a store that fails, the switch's own task cancelled), the machine, the gate and
the drain end up agreeing, and the next switch can begin.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Final, TypeVar

from .audit import AuditLog
from .errors import (
    ModeChangeCancelled,
    ModeChangeFailed,
    ModeChangeInterrupted,
    ModeChangeRolledBack,
    StoreError,
    SwitchInProgress,
)
from .gate import Gate, Ticket
from .logs import get_logger
from .machine import DrainRoute, ModeMachine, TimeoutPolicy, Transition, Trigger, drain_to, step
from .modes import Mode, State, parse_mode
from .policy import CONTEXT_SERVICES, AdmissionPolicy
from .records import Outcome, PersistedState, TransitionRecord, utc_now
from .store import InMemoryStore, Store

__all__ = ["MAX_DRAIN_TIMEOUT", "ModeController", "ModeStatus"]

T = TypeVar("T")

#: The longest drain a controller accepts, in seconds: one week. Longer (or infinite, or NaN)
#: is a mistake, not a wish; bound it where settings are read, with this same constant.
MAX_DRAIN_TIMEOUT: Final = 7 * 24 * 3600.0

#: Called with the draining state when a drain begins (the gate already refuses what that
#: state refuses); returns the long-lived connections it closed, per category, or None.
DrainListener = Callable[[State], Mapping[str, int] | None]

_log = get_logger("servermode")


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
    """One mode change under way, from the moment it is accepted until it is settled."""

    route: DrainRoute
    start: Transition  # the row that begins it, from the steady state being left
    context: _Context
    started: float
    started_at: datetime
    deadline: float
    deadline_at: datetime
    ended: asyncio.Future[None]  # resolved by the first of: drained, cancelled, timed out
    result: asyncio.Future[TransitionRecord]  # what every caller waiting for it is told
    in_flight: dict[str, int] = field(default_factory=dict)
    closed: dict[str, int] = field(default_factory=dict)
    task: asyncio.Task[None] | None = None
    begun: bool = False  # the machine and the gate are in the draining state
    drained: bool = False
    cancelled: _Context | None = None  # who asked to cancel, once someone has
    committed: TransitionRecord | None = None  # the saved end, once it is in force

    @property
    def source(self) -> State:
        return self.route.leaves

    @property
    def target(self) -> Mode:
        return self.route.leads_to.mode

    def retry_after(self) -> int:
        return max(1, math.ceil(self.deadline - time.monotonic()))


class ModeController:
    """Owns the machine, the gate, the store and the audit log.

    Parameters:
        store: where the state and the history are kept (default: in memory).
        policy: which categories each state admits (default: the Context Services preset).
        initial_mode: the mode when the store holds nothing yet.
        drain_timeout: seconds a drain waits for the requests of the outgoing kind admitted
            before it; from 0 to :data:`MAX_DRAIN_TIMEOUT` (a week), else ValueError.
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
        timeout = float(drain_timeout)
        if not 0 <= timeout <= MAX_DRAIN_TIMEOUT:  # NaN fails every comparison: refused too
            raise ValueError(
                f"drain_timeout must be from 0 to {MAX_DRAIN_TIMEOUT:g} seconds (a week), "
                f"not {drain_timeout!r}"
            )
        self.store: Store = store if store is not None else InMemoryStore()
        self.policy = policy
        self.initial_mode = parse_mode(initial_mode)
        self.drain_timeout = timeout
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
        """The state in force: the gate's (the machine moves with it, once a state is saved)."""
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
        state = self.state
        # A change accepted but not begun yet (its intent being saved), or being undone, is
        # not a drain in force: the state is still steady, and status says so.
        drain = self._drain if state.is_draining else None
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
            # No request survived the crash, so there is nothing left to drain: complete it,
            # in the name of whoever asked for it.
            recover = self._step(persisted.state, Trigger.RECOVER)
            state = recover.dest
            asked = _Context(
                persisted.actor, persisted.client, persisted.request_id, persisted.reason
            )
            record = self._record(
                persisted.state,
                state,
                recover.trigger,
                state.mode,
                _outcome(recover),
                now,
                **asked.fields(),
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
            await asyncio.wait([drain.task])
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

        Raises InvalidMode for a bad name, SwitchInProgress while another change is under
        way, ModeChangeRolledBack / ModeChangeCancelled / ModeChangeInterrupted when the old
        mode stays in force, and StoreError when the change could not be saved (the old mode
        stays in force). Cancelling the caller does not stop the change: it completes or
        times out anyway.
        """
        target = parse_mode(mode)
        if not self._started:
            raise RuntimeError("ModeController.start() must be awaited before set_mode()")
        context = _Context(actor, client, request_id, reason)
        current = self.state
        under_way = self._drain
        if under_way is not None:
            retry = under_way.retry_after()
            start = drain_to(target).start
            refused = self._record(current, current, start, target, Outcome.REFUSED)
            await self._append(refused, context)
            raise SwitchInProgress(under_way.route.state, retry)
        if current.mode is target:
            noop = self._record(current, current, None, target, Outcome.NOOP)
            return await self._append(noop, context)
        # Everything up to create_task runs without yielding, so no second change can slip
        # in; and everything that can fail is computed before the change is registered.
        drain = self._plan(current, target, context)
        self._drain = drain
        drain.task = asyncio.get_running_loop().create_task(
            self._switch(drain), name=f"servermode switch to {target}"
        )
        return await asyncio.shield(drain.result)

    async def cancel(
        self, *, actor: str | None = None, reason: str | None = None
    ) -> TransitionRecord | None:
        """Abandon the drain under way and return to the mode it was leaving.

        Returns the record of the change (cancelled, or whatever ended it first), or None
        when no change is under way.
        """
        drain = self._drain
        if drain is None:
            return None
        if drain.cancelled is None:
            drain.cancelled = _Context(actor=actor, reason=reason)
            _end(drain.ended)
        try:
            return await asyncio.shield(drain.result)
        except ModeChangeFailed as failed:
            return failed.record

    def _plan(self, current: State, target: Mode, context: _Context) -> _Drain:
        """The change to ``target``, computed whole; nothing moves."""
        route = drain_to(target)
        start = self._step(current, route.start)
        loop = asyncio.get_running_loop()
        started, started_at = time.monotonic(), utc_now()
        result: asyncio.Future[TransitionRecord] = loop.create_future()
        # Told to whoever waits; if nobody does any more, a failure is not "never retrieved".
        result.add_done_callback(_retrieved)
        return _Drain(
            route=route,
            start=start,
            context=context,
            started=started,
            started_at=started_at,
            deadline=started + self.drain_timeout,
            deadline_at=started_at + timedelta(seconds=self.drain_timeout),
            ended=loop.create_future(),
            result=result,
        )

    async def _switch(self, drain: _Drain) -> None:
        """Run ``drain`` to its end and tell its callers; on any other exit, put it back."""
        try:
            record = await self._run(drain)
        except GeneratorExit:  # the coroutine is being closed unfinished: it may not await
            raise
        except BaseException as exc:
            if drain.committed is not None:  # the end was saved and is in force
                self._settle(drain, drain.committed)
            else:
                await self._abandon(drain, exc)
            if isinstance(exc, Exception):
                return  # told to the callers through drain.result
            raise  # a cancellation (or an interpreter exit) goes on
        self._settle(drain, record)

    async def _run(self, drain: _Drain) -> TransitionRecord:
        route = drain.route
        intent = PersistedState(
            route.state,
            drain.started_at,
            drain.started_at,
            drain.deadline_at,
            **drain.context.fields(),
        )
        await self._save_to_the_end(intent)
        self._begin(drain)
        trigger = await self._wait(drain)
        end = self._step(route.state, trigger)
        context = drain.context
        if trigger is Trigger.CANCEL:
            asked = drain.cancelled
            assert asked is not None
            context = _Context(
                asked.actor or context.actor, context.client, context.request_id, asked.reason
            )
        stragglers = self.gate.outgoing_in_flight() if trigger is not Trigger.DRAINED else {}
        record = self._record(
            drain.source,
            end.dest,
            trigger,
            drain.target,
            _outcome(end),
            duration_ms=(time.monotonic() - drain.started) * 1000,
            in_flight=drain.in_flight,
            stragglers=stragglers,
            closed=drain.closed,
            **context.fields(),
        )
        now = utc_now()
        saved = await self._save_to_the_end(
            PersistedState(end.dest, since=now),
            record,
            then=lambda stored: self._commit(drain, end, stored, now),
        )
        assert saved is not None
        return saved

    def _begin(self, drain: _Drain) -> None:
        """The intent is saved: the machine and the gate enter the draining state together."""
        loop = asyncio.get_running_loop()
        state = self._machine.take(drain.start)
        drain.begun = True
        drain.in_flight = self.gate.begin_drain(state, drain.deadline, _resolver(loop, drain))
        drain.closed = self._notify_drain(state)

    def _commit(
        self, drain: _Drain, end: Transition, record: TransitionRecord, now: datetime
    ) -> None:
        """The end is saved: the machine and the gate leave the draining state together."""
        self._machine.take(end)
        self.gate.set_state(end.dest)
        self._since = now
        drain.committed = record
        self._drain = None
        self._audit.emit(record)

    async def _abandon(self, drain: _Drain, error: BaseException) -> None:
        """Put the mode being left back in force after a switch that could not end, record
        the attempt as failed, and tell the callers.

        Memory first, at once (the table's ``cancel`` leads the machine back, the gate
        follows); then the old state is written over the saved intent, if the store lets us,
        so that a restart does not complete a change that never was.
        """
        stragglers: dict[str, int] = {}
        if drain.begun:
            stragglers = self.gate.outgoing_in_flight()
            back = self._step(drain.route.state, Trigger.CANCEL)
            self._machine.take(back)
            self.gate.set_state(back.dest)
        record = self._record(
            drain.source,
            drain.source,
            None,
            drain.target,
            Outcome.FAILED,
            duration_ms=(time.monotonic() - drain.started) * 1000,
            in_flight=drain.in_flight,
            stragglers=stragglers,
            closed=drain.closed,
            **drain.context.fields(),
        )
        try:
            with contextlib.suppress(StoreError):
                saved = await self._save_to_the_end(
                    PersistedState(drain.source, since=self._since), record
                )
                record = saved if saved is not None else record
        finally:
            self._drain = None
            self._audit.emit(record)
            if not isinstance(error, Exception):
                error = ModeChangeInterrupted(
                    record,
                    f"the mode change was interrupted before it was saved; the server stays "
                    f"in {drain.source.mode} mode",
                )
            if not drain.result.done():
                drain.result.set_exception(error)

    def _settle(self, drain: _Drain, record: TransitionRecord) -> None:
        """Tell the callers how ``drain`` ended."""
        error: ModeChangeFailed | None = None
        if record.outcome is Outcome.ROLLED_BACK:
            error = ModeChangeRolledBack(
                record,
                f"drain timed out after {self.drain_timeout:g}s with requests still in flight; "
                f"the server stays in {drain.source.mode} mode",
            )
        elif record.outcome is Outcome.CANCELLED:
            error = ModeChangeCancelled(
                record, f"mode change cancelled; the server stays in {drain.source.mode} mode"
            )
        if drain.result.done():
            return
        if error is not None:
            drain.result.set_exception(error)
        else:
            drain.result.set_result(record)

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

    def _step(self, source: State, trigger: Trigger) -> Transition:
        """The row of the table ``trigger`` follows from ``source``; the table must have it."""
        row = step(source, trigger, self.timeout_policy)
        if row is None:
            raise RuntimeError(f"the transition table has no {trigger} from {source}")
        return row

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

    async def _save_to_the_end(
        self,
        state: PersistedState,
        record: TransitionRecord | None = None,
        then: Callable[[TransitionRecord], None] | None = None,
    ) -> TransitionRecord | None:
        """Save, even if the switch's task is cancelled meanwhile; apply ``then`` once saved.

        A blocking store's call runs on in its thread whatever happens to the task awaiting
        it: giving up the wait would leave unknown what is on disk, and the next write could
        land before it. So a cancellation waits for the save to end; what was saved is
        applied (``then``, with the stored record); then the cancellation goes on.
        """
        saving = self._call(self.store.save, state, record)
        interrupted: BaseException | None = None
        while not saving.done():
            try:
                await asyncio.wait([saving])
            except asyncio.CancelledError as exc:
                interrupted = exc
        if saving.exception() is None and then is not None and record is not None:
            stored = saving.result()
            then(stored if stored is not None else record)
        if interrupted is not None:
            raise interrupted
        with self._store_errors():
            stored = saving.result()
        return stored if stored is not None else record

    async def _io(self, call: Callable[..., T], *args: Any) -> T:
        """Call the store, off the event loop when it may block; its failures are StoreErrors."""
        with self._store_errors():
            return await self._call(call, *args)

    def _call(self, call: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Start a store call: in a worker thread when the store may block, else at once."""
        loop = asyncio.get_running_loop()
        if self.store.blocking:
            context = contextvars.copy_context()
            return loop.run_in_executor(None, functools.partial(context.run, call, *args))
        done: asyncio.Future[T] = loop.create_future()
        try:
            done.set_result(call(*args))
        except Exception as exc:
            done.set_exception(exc)
        return done

    @contextlib.contextmanager
    def _store_errors(self) -> Iterator[None]:
        try:
            yield
        except StoreError:
            raise
        except Exception as exc:
            raise StoreError(f"store {type(self.store).__name__} failed: {exc}") from exc


def _outcome(row: Transition) -> Outcome:
    assert row.outcome is not None, f"{row.trigger} from {row.source} ends no drain"
    return row.outcome


def _end(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _retrieved(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


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
